<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * A statement being timed by hand (Agent::startSql()). stop() records it
 * once; a span of a disabled agent does nothing.
 */
final class SqlSpan
{
    private readonly int $start;
    private bool $stopped = false;

    public function __construct(private readonly ?Runtime $runtime, private readonly string $sql)
    {
        $this->start = \hrtime(true);
    }

    public function stop(?int $rows = null, bool $failed = false): void
    {
        if ($this->stopped) {
            return;
        }
        $this->stopped = true;
        $this->runtime?->sql($this->sql, \hrtime(true) - $this->start, $rows, $failed);
    }
}
