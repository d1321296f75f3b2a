<?php

declare(strict_types=1);

// CLI job of the example shop (run from cron in real life): rebuilds the
// product search terms in one transaction.
//   APP_DB_DSN='pgsql:host=127.0.0.1;port=5432;dbname=shop' APP_DB_USER=postgres php bin/reindex.php

require __DIR__ . '/../src/autoload.php';

use App\Db;

/** @return list<string> */
function search_terms_for(string $sku, string $name): array
{
    $terms = [strtolower($sku)];
    foreach (preg_split('/\s+/', strtolower($name)) ?: [] as $word) {
        if ($word !== '' && !in_array($word, $terms, true)) {
            $terms[] = $word;
        }
    }
    return $terms;
}

try {
    $db = Db::connection();
    $db->beginTransaction();
    $db->exec('DELETE FROM search_terms');
    $insert = $db->prepare('INSERT INTO search_terms (product_id, term) VALUES (?, ?)');
    $count = 0;
    foreach ($db->query('SELECT id, sku, name FROM products ORDER BY id')->fetchAll() as $product) {
        foreach (search_terms_for((string) $product['sku'], (string) $product['name']) as $term) {
            $insert->execute([$product['id'], $term]);
            $count++;
        }
    }
    $db->commit();
    fwrite(STDOUT, "reindexed {$count} search terms\n");
    exit(0);
} catch (\Throwable $e) {
    fwrite(STDERR, 'reindex failed: ' . $e->getMessage() . "\n");
    exit(1);
}
