<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Full call graph with tideways_xhprof or xhprof: real per-function wall
 * times and call counts, for sampled or forced requests only (every function
 * call is instrumented, which costs far more than sampling).
 *
 * When Excimer is loaded it runs alongside: `fn` comes from the call graph,
 * `stacks` and `period` from Excimer, so flame graphs exist for these
 * requests too. The Excimer samples then include the instrumentation's own
 * overhead (more for code making many small calls); `fn` does not, beyond
 * the instrumentation's usual skew.
 *
 * @internal created by ProfilerFactory
 */
final class CallGraphProfiler implements Profiler
{
    private bool $running = false;
    private bool $stopped = false;
    private int $startedNs = 0;

    /**
     * @param 'tideways'|'xhprof' $backend
     */
    public function __construct(private string $backend, private ?SamplingProfiler $sampler)
    {
    }

    public function name(): string
    {
        return $this->backend;
    }

    public function start(): void
    {
        if ($this->running || $this->stopped) {
            return;
        }
        try {
            $this->sampler?->start();
            $this->startedNs = \hrtime(true);
            // Wall time and calls only (flags 0): memory and CPU columns
            // cost extra on every call and nothing here uses them.
            if ($this->backend === 'tideways') {
                @\tideways_xhprof_enable(0);
            } else {
                @xhprof_enable(0);
            }
            $this->running = true;
        } catch (\Throwable) {
            $this->running = false;
        }
    }

    public function fullRate(float $periodSec, float $lateSec = 0.0): void
    {
        try {
            if ($this->sampler === null && $this->running && \class_exists(\ExcimerProfiler::class, false)) {
                $this->sampler = new SamplingProfiler($periodSec, SamplingProfiler::CPU_CLOCK, $periodSec, $periodSec);
                $this->sampler->start();
                return;
            }
            $this->sampler?->fullRate($periodSec, $lateSec);
        } catch (\Throwable) {
            // keep what we have
        }
    }

    public function addWall(string $function, string $caller, float $seconds): void
    {
        $this->sampler?->addWall($function, $caller, $seconds);
    }

    public function stop(): array
    {
        $result = ['fn' => [], 'stacks' => [], 'period' => null];
        if (!$this->running) {
            // Not started, already stopped, or the call graph failed to start.
            if ($this->sampler !== null) {
                $s = $this->sampler->stop();
                $result['stacks'] = $s['stacks'];
                $result['period'] = $s['period'];
                if (isset($s['wall'])) {
                    $result['wall'] = $s['wall'];
                }
            }
            return $result;
        }
        $this->running = false;
        $this->stopped = true;
        $data = null;
        try {
            $data = $this->backend === 'tideways' ? @\tideways_xhprof_disable() : @xhprof_disable();
        } catch (\Throwable) {
            $data = null;
        }
        $elapsed = (\hrtime(true) - $this->startedNs) / 1e9;
        if ($this->sampler !== null) {
            $s = $this->sampler->stop();
            $result['stacks'] = $s['stacks'];
            $result['period'] = $s['period'];
            if (isset($s['wall'])) {
                $result['wall'] = $s['wall'];
            }
        }
        try {
            if (\is_array($data) && $data !== []) {
                $result['fn'] = CallGraph::reduce($data, $elapsed, self::lifecycle());
            }
        } catch (\Throwable) {
            // keep what we have
        }
        return $result;
    }

    /**
     * xhprof names of the agent's frames on the current stack: the path
     * from the shutdown function (or whoever stops the profile) down to here.
     *
     * @return array<string,bool>
     */
    private static function lifecycle(): array
    {
        $names = [];
        $trace = \debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS);
        $last = \count($trace) - 1;
        foreach ($trace as $i => $frame) {
            $class = $frame['class'] ?? '';
            $function = $frame['function'];
            if ($class !== '') {
                if (!\str_starts_with($class, Frames::AGENT_NAMESPACE)) {
                    continue;
                }
                if (!\str_starts_with($function, '{closure')) {
                    $names[$class . '::' . $function] = true;
                } elseif ($i === $last) {
                    // A shutdown closure of the agent: xhprof knows it only
                    // as {closure}, so top-level closures of the application
                    // are dropped with it. A named shutdown method avoids that.
                    $names['{closure}'] = true;
                }
            } elseif (\str_starts_with($function, Frames::AGENT_NAMESPACE)) {
                $names[$function] = true;
            }
        }
        return $names;
    }
}
