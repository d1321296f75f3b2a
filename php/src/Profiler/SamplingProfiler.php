<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Excimer sampling on the request thread's CPU clock (EXCIMER_CPU): the
 * stack of user code is recorded every $period seconds of CPU time, so `fn`
 * self/inclusive times are CPU seconds (samples × period) — the on-CPU work
 * that makes the load — and the time a request waits (SQL, I/O, locks) is not
 * attributed to PHP functions; the SQL capture and the request's wall time
 * cover that.
 *
 * Why the CPU clock (measured, see php/README.md): with the wall clock every
 * request is sampled for the time it waits too, and under CPU contention —
 * exactly during a load spike — a request's wall time stretches, so it gets
 * more samples and the profiler's cost grows when CPU is scarcest (on the
 * php-fpm benchmark under contention: +4.7 % CPU per request at 10 ms and
 * +13.8 % at 1 ms with the wall clock). On the CPU clock the cost is a
 * fixed fraction of the CPU a request uses. The kernel checks CPU timers on
 * its tick (CONFIG_HZ: 250 Hz here), so periods below 4 ms arrive as one
 * sample per tick weighted with the periods it covers.
 *
 * Excimer staggers the first sample uniformly within the first period, so a
 * request using c CPU seconds gets c/period samples on average however short
 * it is: per-function totals summed over many requests are unbiased even
 * when most requests get no sample at all (for those stop() does no work
 * beyond stopping the timer).
 *
 * @internal created by ProfilerFactory
 */
final class SamplingProfiler implements Profiler
{
    /** Frames recorded per sample; deeper stacks keep their innermost frames. */
    public const MAX_DEPTH = 128;

    /** Excimer's EXCIMER_CPU and EXCIMER_REAL (literal: usable without the extension). */
    public const CPU_CLOCK = 1;
    public const WALL_CLOCK = 0;

    private ?\ExcimerProfiler $excimer = null;
    private bool $stopped = false;

    /** Seconds one sample stands for. */
    private float $weight;

    /**
     * @param int $eventType CPU_CLOCK (default) or WALL_CLOCK
     * @param float $weight seconds one sample stands for, when only a share
     *                      of requests is profiled (0: the period)
     */
    public function __construct(private float $period, private int $eventType = self::CPU_CLOCK, float $weight = 0.0)
    {
        $this->weight = $weight > 0.0 && is_finite($weight) ? $weight : $period;
    }

    public function name(): string
    {
        return 'excimer';
    }

    /** Seconds one sample stands for: the `period` of the end message. */
    public function period(): float
    {
        return $this->weight;
    }

    public function start(): void
    {
        if ($this->excimer !== null || $this->stopped) {
            return;
        }
        try {
            $p = new \ExcimerProfiler();
            $p->setEventType($this->eventType);
            $p->setPeriod($this->period); // also re-draws the random first tick
            $p->setMaxDepth(self::MAX_DEPTH);
            @$p->start();
            $this->excimer = $p;
        } catch (\Throwable) {
            $this->excimer = null;
        }
    }

    public function stop(): array
    {
        $result = ['fn' => [], 'stacks' => [], 'period' => $this->weight];
        $p = $this->excimer;
        if ($p === null) {
            return $result;
        }
        $this->excimer = null;
        $this->stopped = true;
        try {
            @$p->stop();
            if (\PHP_SAPI === 'cli') {
                ExcimerExit::guard(); // not even loaded under php-fpm
            }
            $log = $p->getLog();
            if (\count($log) === 0) {
                return $result; // the common case for short requests: no work at all
            }
            $profile = CollapsedProfile::build($log->formatCollapsed(), $this->weight);
            $result['fn'] = $profile['fn'];
            $result['stacks'] = $profile['stacks'];
        } catch (\Throwable) {
            // keep the empty result
        }
        return $result;
    }
}
