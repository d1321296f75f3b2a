<?php

declare(strict_types=1);

// A long CLI run blocked in one call: $argv[1] seconds in usleep() made by
// one named function.

function bitville_test_long_wait(float $seconds): string
{
    usleep((int) ($seconds * 1e6));
    return "done\n";
}

echo bitville_test_long_wait((float) ($argv[1] ?? '1'));
