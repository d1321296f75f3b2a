<?php

declare(strict_types=1);

/*
 * The cost of spooling one end message (docs/performance.md, "The spool
 * under a stall (PHP side)"): Spool::write() of a realistic ~1.5 KB end
 * payload, timed with hrtime, into an empty spool (no eviction) and into a
 * full one (every write past the limit deletes the oldest files).
 *
 *   php php/tests/bench/spool_bench.php [DIR] [WRITES]
 *
 * DIR is a directory to create the spools in (default: /dev/shm and the
 * system temp directory, which is on disk here); WRITES defaults to 5000.
 */

require dirname(__DIR__, 2) . '/tests/Profiler/autoload.php';

use Bitville\Apm\Encoder;
use Bitville\Apm\Transport\DropCounter;
use Bitville\Apm\Transport\Spool;

$dirs = isset($argv[1]) ? [$argv[1]] : ['/dev/shm', sys_get_temp_dir()];
$writes = (int) ($argv[2] ?? 5000);

// An end message of a request with a few statements and functions, as the
// agent encodes it (~1.5 KB).
$end = json_decode((string) file_get_contents(dirname(__DIR__, 3) . '/testdata/protocol/end.json'), true);
$end['sql'] = array_slice($end['sql'], 0, 3);
$end['fn'] = array_slice($end['fn'], 0, 5);
$end['stacks'] = array_slice($end['stacks'] ?? [], 0, 2);
$payload = (string) (new Encoder())->encode($end);

function rm(string $dir): void
{
    foreach (glob($dir . '/{,.}*', GLOB_BRACE) ?: [] as $f) {
        if (basename($f) !== '.' && basename($f) !== '..') {
            unlink($f);
        }
    }
    rmdir($dir);
}

/** @return array{float, float, float, float, int, int} mean, median, p99, max µs, files at the end, dropped */
function run(string $dir, string $payload, int $writes, int $maxBytes): array
{
    $drops = new DropCounter(1, false);
    $spool = new Spool($dir, $maxBytes, getmypid() ?: 1, $drops);
    $t = [];
    for ($i = 0; $i < $writes; $i++) {
        $h = hrtime(true);
        if (!$spool->write($payload)) {
            fwrite(STDERR, "write $i failed\n");
            exit(1);
        }
        $t[] = (hrtime(true) - $h) / 1000;
    }
    sort($t);
    $n = count($t);
    return [array_sum($t) / $n, $t[intdiv($n, 2)], $t[(int) floor($n * 0.99)], $t[$n - 1], count($spool->files()), $drops->pending()];
}

printf("payload %d bytes, %d writes, PHP %s, %s\n", strlen($payload), $writes, PHP_VERSION, php_uname('s') . ' ' . php_uname('r'));
printf("%-28s %-22s %9s %9s %9s %9s %6s %8s\n", 'dir', 'case', 'mean µs', 'median µs', 'p99 µs', 'max µs', 'files', 'dropped');
foreach ($dirs as $base) {
    $fs = trim((string) shell_exec('stat -f -c %T ' . escapeshellarg($base) . ' 2>/dev/null'));
    $cases = [
        'empty spool, 64 MiB' => 64 << 20,
        // Holds ~1/5 of the writes: after the first fifth every write past
        // the limit evicts, a quarter of the spool at a time.
        'full spool, evicting' => intdiv($writes * strlen($payload), 5),
    ];
    foreach ($cases as $name => $max) {
        $dir = $base . '/bitville-spool-bench-' . bin2hex(random_bytes(4));
        [$mean, $med, $p99, $worst, $files, $dropped] = run($dir, $payload, $writes, $max);
        rm($dir);
        printf("%-28s %-22s %9.1f %9.1f %9.1f %9.1f %6d %8d\n", "$base ($fs)", $name, $mean, $med, $p99, $worst, $files, $dropped);
    }
}
