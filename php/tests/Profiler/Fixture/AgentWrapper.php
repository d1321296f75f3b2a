<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler\Fixture;

/**
 * Stands for an agent wrapper around application work (like TracedPdo):
 * it is in the Bitville\Apm\ namespace, so the profilers hide its frame.
 */
final class AgentWrapper
{
    public static function call(callable $work): mixed
    {
        return $work();
    }
}
