<?php

declare(strict_types=1);

// CLI job of the example shop: "closes the books" of one order, holding
// its row locked while it works, the way a slow batch job holding a
// transaction open blocks every request that touches the same rows.
//   php bin/close-books.php ORDER_ID SECONDS

require __DIR__ . '/../src/autoload.php';

use App\Db;

$id = (int) ($argv[1] ?? 7);
$seconds = (float) ($argv[2] ?? 5);

try {
    $db = Db::connection();
    $db->beginTransaction();
    $stmt = $db->prepare('UPDATE orders SET status = ? WHERE id = ?');
    $stmt->execute(['closing', $id]);
    usleep((int) ($seconds * 1_000_000)); // the long work, with the row locked
    $stmt->execute(['paid', $id]);
    $db->commit();
    fwrite(STDOUT, "closed the books of order {$id}\n");
    exit(0);
} catch (\Throwable $e) {
    fwrite(STDERR, 'close-books: ' . get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
