<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * A running timer that calls the agent back (ProgressTimer). The runtime
 * holds it while the request runs and stops it once at the end.
 * Implementations never throw and never print.
 */
interface Timer
{
    /** Stops the timer; no callback runs afterwards. Safe to call twice. */
    public function stop(): void;

    /**
     * Re-arms the timer: the next callback after $afterSec, then every
     * $intervalSec. Safe to call from the callback.
     */
    public function restart(float $afterSec, float $intervalSec): void;
}
