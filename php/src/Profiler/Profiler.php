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
     * Stops and returns ['fn' => list<array{n:string,self:float,incl:float,calls?:int}> heaviest self first,
     * 'stacks' => list<array{s:string,n:int}> most samples first (frames outermost first joined by ';'),
     * 'period' => ?float seconds]. Never throws.
     *
     * @return array{fn: list<array{n:string,self:float,incl:float,calls?:int}>, stacks: list<array{s:string,n:int}>, period: ?float}
     */
    public function stop(): array;
}
