<?php

declare(strict_types=1);

// Workload for the profiler tests. It lives outside the Bitville\Apm\
// namespace on purpose: the profilers hide the agent's own frames, and the
// test classes are in that namespace.

namespace BitvilleProfilerFixture;

/**
 * Burns CPU for at least $seconds of wall time in this function's own code.
 */
function burnCpu(float $seconds): float
{
    $end = hrtime(true) + (int) ($seconds * 1e9);
    $x = 0.0;
    do {
        for ($i = 0; $i < 2000; $i++) {
            $x += $i * 0.5;
        }
    } while (hrtime(true) < $end);
    return $x;
}

/**
 * Calls burnCpu() and does a little of its own work.
 */
function outer(float $seconds): float
{
    return burnCpu($seconds);
}

function recurse(int $depth, float $seconds): float
{
    if ($depth <= 0) {
        return burnCpu($seconds);
    }
    return recurse($depth - 1, $seconds);
}

final class Service
{
    public function handle(float $seconds): float
    {
        return outer($seconds) + array_sum(array_map(static fn (int $i): float => burnCpu(0.0001 * $i), [1, 2]));
    }
}

/**
 * Recursion with a long name, to overflow the byte limit of a collapsed stack.
 */
function recurseThroughAFunctionWhoseNameIsLongEnoughToMakeDeepStacksOverflowTheByteLimitOfOneStack(int $depth, float $seconds): float
{
    if ($depth <= 0) {
        return burnCpu($seconds);
    }
    return recurseThroughAFunctionWhoseNameIsLongEnoughToMakeDeepStacksOverflowTheByteLimitOfOneStack($depth - 1, $seconds);
}

/**
 * Waits without using CPU.
 */
function waitFor(float $seconds): void
{
    usleep((int) ($seconds * 1e6));
}

/** One blocking internal call (WallProfileTest). */
function blockInUsleep(int $microseconds): void
{
    usleep($microseconds);
    $done = true;
}
