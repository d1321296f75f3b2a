<?php

declare(strict_types=1);

// CPU-bound work in a named function, long enough for progress ticks and
// for the sampling profiler to see it.

function bitville_test_busy_loop(float $seconds): int
{
    $end = microtime(true) + $seconds;
    $n = 0;
    while (microtime(true) < $end) {
        for ($i = 0; $i < 1000; $i++) {
            $n += $i % 7;
        }
    }
    return $n;
}

echo bitville_test_busy_loop((float) ($argv[1] ?? '0.5')) > 0 ? "done\n" : "none\n";
