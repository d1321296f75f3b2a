<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Picks the profiler for one request from the `profiler` setting and the
 * extensions that are loaded:
 *
 * | setting    | ordinary request | sampled/forced request ($callGraph)                         |
 * |------------|------------------|-------------------------------------------------------------|
 * | `off`      | none             | none                                                        |
 * | `excimer`  | Excimer          | Excimer                                                     |
 * | `tideways` | Excimer          | tideways_xhprof call graph (+ Excimer stacks when loaded)   |
 * | `xhprof`   | Excimer          | xhprof call graph (+ Excimer stacks when loaded)            |
 *
 * A missing extension falls back to the next cheaper choice: no call-graph
 * extension → Excimer; no Excimer → nothing (null).
 */
final class ProfilerFactory
{
    /**
     * Default Excimer period in seconds (config `excimer_period_ms` = 100),
     * chosen by measurement (profiler section of php/README.md): on a
     * ~10 ms endpoint the profiler costs ~1.4 % CPU per request at 100 ms
     * and ~2.4 % at 10 ms (ten times shorter), leaving the rest of the
     * 3 % / 5 % budget to the agent. Samples follow CPU use, so a busy host
     * still yields thousands per minute.
     */
    public const DEFAULT_PERIOD = \Bitville\Apm\Config::DEFAULT_EXCIMER_PERIOD_MS / 1000;
    /** Shortest accepted period; shorter ones are raised to it. */
    public const MIN_PERIOD = 0.001;
    /** Longest accepted period (the protocol's limit for `period`). */
    public const MAX_PERIOD = 60.0;

    /**
     * $setting = config `profiler` (excimer|tideways|xhprof|off); $periodSec = excimer sampling period;
     * $callGraph = true on sampled/forced requests. Returns null when nothing is available/enabled. Never throws.
     */
    public static function create(string $setting, float $periodSec, bool $callGraph, float $requestRate = 1.0, bool $sample = true, float $wallPeriodSec = 0.0): ?Profiler
    {
        try {
            return self::createFor($setting, $periodSec, $callGraph, [
                'excimer' => \extension_loaded('excimer'),
                'tideways' => \function_exists('tideways_xhprof_enable'),
                'xhprof' => \function_exists('xhprof_enable'),
            ], $requestRate, $sample, $wallPeriodSec);
        } catch (\Throwable) {
            return null;
        }
    }

    /**
     * create() with the loaded extensions given, for tests.
     *
     * $requestRate is the share of requests Excimer profiles (this one is
     * among them when $sample): they are sampled $requestRate times as
     * often, and each sample stands for the period divided by the rate, so
     * per-function totals over many requests stay what profiling every
     * request at $periodSec would give. $wallPeriodSec > 0 adds the
     * real-clock profiler, drawn the same way (period × rate, each sample
     * standing for $wallPeriodSec).
     *
     * @internal
     * @param array{excimer?:bool,tideways?:bool,xhprof?:bool} $loaded
     */
    public static function createFor(string $setting, float $periodSec, bool $callGraph, array $loaded, float $requestRate = 1.0, bool $sample = true, float $wallPeriodSec = 0.0): ?Profiler
    {
        $setting = \strtolower(\trim($setting));
        if ($setting !== 'excimer' && $setting !== 'tideways' && $setting !== 'xhprof') {
            return null; // 'off', and anything the config did not validate
        }
        $sampler = null;
        if ($sample && ($loaded['excimer'] ?? false)) {
            $rate = \is_finite($requestRate) && $requestRate > 0.0 && $requestRate < 1.0 ? $requestRate : 1.0;
            $period = self::period(self::period($periodSec) * $rate);
            $wall = $wallPeriodSec > 0.0 && \is_finite($wallPeriodSec) ? self::period($wallPeriodSec) : 0.0;
            $sampler = new SamplingProfiler($period, SamplingProfiler::CPU_CLOCK, $period / $rate,
                $wall > 0.0 ? self::period($wall * $rate) : 0.0, $wall);
        }
        if ($callGraph && $setting !== 'excimer' && ($loaded[$setting] ?? false)) {
            return new CallGraphProfiler($setting, $sampler);
        }
        return $sampler;
    }

    /**
     * The period actually used for a configured one.
     */
    public static function period(float $periodSec): float
    {
        if (!\is_finite($periodSec) || $periodSec <= 0.0) {
            return self::DEFAULT_PERIOD;
        }
        return \min(\max($periodSec, self::MIN_PERIOD), self::MAX_PERIOD);
    }
}
