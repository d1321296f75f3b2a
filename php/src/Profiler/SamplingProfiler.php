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
 * Beside it, with $wallPeriod > 0, a second Excimer profiler samples the
 * real-time clock: where the request's worker spent wall time, blocked calls
 * included (WallProfile), for the `wall` list of the end message.
 *
 * fullRate() starts a second phase (a request still running after
 * profile_long_ms): both profilers restart at the given period, each sample
 * standing for that period; what the first phase took keeps its weights.
 * stop() merges the phases: fn and the wall list in seconds, stacks with
 * counts rescaled to the smallest weight used (the message's `period`).
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
    private ?\ExcimerProfiler $wallExcimer = null;
    private bool $started = false;
    /** hrtime() when the profilers started. */
    private int $startedNs = 0;
    private bool $stopped = false;

    /** Seconds one sample stands for. */
    private float $weight;
    private float $wallWeight;

    /** @var list<array{0: float, 1: string}> finished phases: weight, collapsed stacks */
    private array $phases = [];
    /** @var list<array<string, float>> WallProfile::collect() of finished phases */
    private array $wallParts = [];

    /**
     * @param int $eventType CPU_CLOCK (default) or WALL_CLOCK
     * @param float $weight seconds one sample stands for, when only a share
     *                      of requests is profiled (0: the period)
     * @param float $wallPeriod period of the real-clock profiler beside it (0: none)
     * @param float $wallWeight seconds one real-clock sample stands for (0: its period)
     */
    public function __construct(
        private float $period,
        private int $eventType = self::CPU_CLOCK,
        float $weight = 0.0,
        private float $wallPeriod = 0.0,
        float $wallWeight = 0.0,
    ) {
        $this->weight = $weight > 0.0 && \is_finite($weight) ? $weight : $period;
        $this->wallWeight = $wallWeight > 0.0 && \is_finite($wallWeight) ? $wallWeight : $wallPeriod;
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
        if ($this->started || $this->stopped) {
            return;
        }
        $this->started = true;
        $this->startedNs = \hrtime(true);
        $this->excimer = self::excimer($this->eventType, $this->period);
        if ($this->wallPeriod > 0.0) {
            $this->wallExcimer = self::excimer(self::WALL_CLOCK, $this->wallPeriod);
        }
    }

    public function fullRate(float $period, float $lateSec = 0.0): void
    {
        if (!$this->started || $this->stopped || !($period > 0.0) || !\is_finite($period)) {
            return;
        }
        try {
            $late = \is_finite($lateSec) && $lateSec > 0.0 ? $lateSec : 0.0;
            $this->endPhase((\hrtime(true) - $this->startedNs) / 1e9 - $late);
            $this->period = $this->weight = $period;
            $this->wallPeriod = $this->wallWeight = $period;
            $this->excimer = self::excimer($this->eventType, $period);
            $this->wallExcimer = self::excimer(self::WALL_CLOCK, $period);
        } catch (\Throwable) {
            // keep what we have
        }
    }

    public function stop(): array
    {
        $result = ['fn' => [], 'stacks' => [], 'period' => $this->weight];
        if (!$this->started || $this->stopped) {
            return $result;
        }
        $this->stopped = true;
        try {
            $this->endPhase();
            if (\PHP_SAPI === 'cli') {
                ExcimerExit::guard(); // not even loaded under php-fpm
            }
            $wall = WallProfile::rank($this->wallParts);
            if ($wall !== []) {
                $result['wall'] = $wall;
            }
            if (\count($this->phases) === 1) {
                [$weight, $collapsed] = $this->phases[0];
                if ($collapsed !== '') {
                    $profile = CollapsedProfile::build($collapsed, $weight);
                    $result['fn'] = $profile['fn'];
                    $result['stacks'] = $profile['stacks'];
                }
                $result['period'] = $weight;
            } elseif ($this->phases !== []) {
                $result = self::merge($this->phases) + $result;
            }
        } catch (\Throwable) {
            // keep what we have
        }
        $this->phases = [];
        $this->wallParts = [];
        return $result;
    }

    public function addWall(string $function, string $caller, float $seconds): void
    {
        if ($function !== '' && \is_finite($seconds) && $seconds > 0.0 && !$this->stopped) {
            $this->wallParts[] = [$function . "\0" . $caller => $seconds];
        }
    }

    /**
     * Stops the running profilers and keeps what they took. Real-clock
     * time after $markSec (seconds since start) counts at its own length,
     * not weighted: it belongs to the full-rate phase.
     */
    private function endPhase(float $markSec = \INF): void
    {
        $cpu = $this->excimer;
        $wall = $this->wallExcimer;
        $this->excimer = $this->wallExcimer = null;
        if ($cpu !== null) {
            @$cpu->stop();
            $log = $cpu->getLog();
            // the common case for short requests: no samples, no work
            $this->phases[] = [$this->weight, \count($log) === 0 ? '' : $log->formatCollapsed()];
        }
        if ($wall !== null) {
            @$wall->stop();
            $log = $wall->getLog();
            if (\count($log) > 0) {
                $this->wallParts[] = WallProfile::collect($log, $this->wallWeight, $this->wallPeriod, $markSec);
            }
        }
    }

    /**
     * fn and stacks of several phases: seconds add up; stack counts are
     * rescaled to the smallest weight (rounded, at least 1).
     *
     * @param list<array{0: float, 1: string}> $phases
     * @return array{fn: list<array{n:string,self:float,incl:float}>, stacks: list<array{s:string,n:int}>, period: float}
     */
    private static function merge(array $phases): array
    {
        $min = \min(\array_column($phases, 0));
        $fn = [];
        $stacks = [];
        foreach ($phases as [$weight, $collapsed]) {
            if ($collapsed === '') {
                continue;
            }
            $p = CollapsedProfile::build($collapsed, $weight);
            foreach ($p['fn'] as $f) {
                $e = $fn[$f['n']] ?? ['n' => $f['n'], 'self' => 0.0, 'incl' => 0.0];
                $e['self'] = \round($e['self'] + $f['self'], 6);
                $e['incl'] = \round($e['incl'] + $f['incl'], 6);
                $fn[$f['n']] = $e;
            }
            foreach ($p['stacks'] as $st) {
                $stacks[$st['s']] = ($stacks[$st['s']] ?? 0) + \max(1, (int) \round($st['n'] * $weight / $min));
            }
        }
        return ['fn' => Frames::rankFunctions(\array_values($fn)), 'stacks' => Frames::rankStacks($stacks), 'period' => $min];
    }

    private static function excimer(int $eventType, float $period): ?\ExcimerProfiler
    {
        try {
            $p = new \ExcimerProfiler();
            $p->setEventType($eventType);
            $p->setPeriod($period); // also re-draws the random first tick
            $p->setMaxDepth(self::MAX_DEPTH);
            @$p->start();
            return $p;
        } catch (\Throwable) {
            return null;
        }
    }
}
