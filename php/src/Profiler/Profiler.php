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
     * after profile_long_ms); what was taken before keeps its weights,
     * except the last $lateSec of it: the mark's tick came that late (the
     * request was in one call), and that part is the full-rate phase's,
     * counted at its own length. Never throws.
     */
    public function fullRate(float $periodSec, float $lateSec = 0.0): void;

    /**
     * Adds $seconds of wall time measured outside the profiler: the call
     * a request not drawn was blocked in when the long-request mark came
     * (the mark's tick could only run once it returned). Never throws.
     */
    public function addWall(string $function, string $caller, float $seconds): void;

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
