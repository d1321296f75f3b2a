<?php

declare(strict_types=1);

function fail_deep(): void
{
    throw new \RuntimeException('boom with token=abc123');
}

echo "before\n";
fail_deep();
