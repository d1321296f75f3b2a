<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * A per-request profiler: started once at prepend time, stopped once at
 * shutdown. Implementations never throw and never print.
 */
interface Profiler
{
    /** 'excimer' | 'tideways' | 'xhprof' */
    public function name(): string;

    public function start(): void;

    /**
     * From now on, samples every $periodSec on the CPU and the real-time
     * clock, each sample standing for $periodSec (a request still running
     * after profile_long_ms); what was taken before keeps its weights.
     * Never throws.
     */
    public function fullRate(float $periodSec): void;

    /**
     * Stops and returns ['fn' => list<array{n:string,self:float,incl:float,calls?:int}> heaviest self first,
     * 'stacks' => list<array{s:string,n:int}> most samples first (frames outermost first joined by ';'),
     * 'period' => ?float seconds, and 'wall' => list<array{n:string,c:string,s:float}> when the real-time clock was
     * sampled (WallProfile)]. Never throws.
     *
     * @return array{fn: list<array{n:string,self:float,incl:float,calls?:int}>, stacks: list<array{s:string,n:int}>, period: ?float, wall?: list<array{n:string,c:string,s:float}>}
     */
    public function stop(): array;
}
