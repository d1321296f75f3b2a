<?php

declare(strict_types=1);

// A long CLI run: $argv[1] seconds of CPU time in one named function.

function bitville_test_long_cpu(float $seconds): int
{
    $n = 0;
    do {
        for ($i = 0; $i < 100000; $i++) {
            $n += $i % 7;
        }
        $r = getrusage();
    } while ($r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6 + $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec'] / 1e6 < $seconds);
    return $n;
}

echo bitville_test_long_cpu((float) ($argv[1] ?? '1')) > 0 ? "done\n" : "none\n";
