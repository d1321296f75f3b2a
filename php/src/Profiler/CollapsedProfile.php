<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Turns Excimer's collapsed stacks (ExcimerLog::formatCollapsed(), one
 * "frame;frame;frame count" line per distinct stack, aggregated in C) into
 * the `fn` and `stacks` of an `end` message.
 *
 * - The outermost top-level-code frame is the script body: `{main}`.
 *   Excimer's own depth marker `excimer_truncated` becomes `{truncated}`.
 * - Agent frames (Frames::isAgent) are removed from a stack, so the time of
 *   a wrapper such as TracedPdo::query counts as self time of the
 *   application function that called it — as if the agent were not there
 *   (Excimer records user code only: time inside PDO::query is the caller's
 *   self time anyway). A sample whose outermost frame is the agent's (its
 *   prepend file, its shutdown function) is the agent's own work and is
 *   dropped entirely.
 * - self = samples with the function innermost, incl = samples with the
 *   function anywhere in the stack (once per sample, so recursion does not
 *   count twice); seconds = samples × period, so self ≤ incl always.
 *   Frames cut off by the depth limit get no inclusive time for that sample.
 *
 * @internal
 */
final class CollapsedProfile
{
    /**
     * @return array{fn: list<array{n:string,self:float,incl:float}>, stacks: list<array{s:string,n:int}>}
     */
    public static function build(string $collapsed, float $period): array
    {
        /** @var array<string,string|false> $names raw frame => output name, false = agent frame */
        $names = [];
        /** @var array<string,int> $stacks */
        $stacks = [];
        /** @var array<string,int> $self */
        $self = [];
        /** @var array<string,int> $incl */
        $incl = [];

        foreach (\explode("\n", $collapsed) as $line) {
            $sp = \strrpos($line, ' ');
            if ($sp === false) {
                continue;
            }
            $n = (int) \substr($line, $sp + 1);
            // Excimer 1.0.4 starts every line but the first with ';'.
            $raw = \explode(';', \ltrim(\substr($line, 0, $sp), ';'));
            if ($n <= 0 || $raw[0] === '') {
                continue;
            }

            // The outermost frame decides whether the sample is the agent's.
            $first = $raw[0];
            if ($first === 'excimer_truncated') {
                $frames = [Frames::TRUNCATED];
            } elseif (Frames::isAgent($first)) {
                continue;
            } elseif (Frames::isFileScope($first)) {
                $frames = [Frames::MAIN];
            } else {
                $frames = [Frames::clean($first)];
            }
            for ($i = 1, $c = \count($raw); $i < $c; $i++) {
                $f = $raw[$i];
                $name = $names[$f] ?? null;
                if ($name === null) {
                    $name = $names[$f] = Frames::isAgent($f) ? false : Frames::clean($f);
                }
                if ($name !== false) {
                    $frames[] = $name;
                }
            }

            $key = Frames::collapse($frames);
            $stacks[$key] = ($stacks[$key] ?? 0) + $n;

            $top = $frames[\count($frames) - 1];
            $self[$top] = ($self[$top] ?? 0) + $n;
            $seen = [];
            foreach ($frames as $f) {
                if (!isset($seen[$f])) {
                    $seen[$f] = true;
                    $incl[$f] = ($incl[$f] ?? 0) + $n;
                }
            }
        }

        $fn = [];
        foreach ($incl as $name => $samples) {
            if ($name === Frames::TRUNCATED) {
                continue; // a marker in stacks, not a function
            }
            // rounded to µs: shorter JSON, and rounding keeps self ≤ incl
            $fn[] = [
                'n' => (string) $name,
                'self' => \round(($self[$name] ?? 0) * $period, 6),
                'incl' => \round($samples * $period, 6),
            ];
        }
        return ['fn' => Frames::rankFunctions($fn), 'stacks' => Frames::rankStacks($stacks)];
    }
}
