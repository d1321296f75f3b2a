<?php

declare(strict_types=1);

// CLI job of the example shop (run from cron in real life): rebuilds the
// "customers like you also bought" lists of every customer, pass after
// pass, until it has spent CPU_SECONDS of CPU time; nearly all of it in
// App\Recommendations::score.
//   php bin/rebuild-recommendations.php [CPU_SECONDS]

require __DIR__ . '/../src/autoload.php';

use App\Db;
use App\Recommendations;

function cpu_seconds(): float
{
    $u = getrusage();
    return $u['ru_utime.tv_sec'] + $u['ru_stime.tv_sec'] + ($u['ru_utime.tv_usec'] + $u['ru_stime.tv_usec']) / 1e6;
}

$budget = max(0.0, (float) ($argv[1] ?? 12));

try {
    $db = Db::connection();
    $histories = Recommendations::histories($db);
    $prices = Recommendations::prices($db);
    $start = cpu_seconds();
    $lists = 0;
    do {
        foreach ($histories as $history) {
            Recommendations::score($history, $prices, 10);
            $lists++;
        }
    } while (cpu_seconds() - $start < $budget);
    fwrite(STDOUT, sprintf("built %d recommendation lists in %.1f s of CPU\n", $lists, cpu_seconds() - $start));
    exit(0);
} catch (\Throwable $e) {
    fwrite(STDERR, 'rebuild-recommendations: ' . get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
