<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

use Bitville\Apm\Messages;

/**
 * Turns the entries of a real-clock (EXCIMER_REAL) Excimer log into the
 * end message's wall-time list: where the request's worker spent wall time,
 * as [n => function or call, c => caller, s => seconds], heaviest first.
 *
 * - An entry with one event is a sample of the running user code: `n` is
 *   the leaf function (named as in `fn`), `c` its parent frame ("" at the
 *   top level).
 * - An entry with two or more events was taken right after a call that
 *   outlasted a period — in practice a blocking internal call, which Excimer
 *   never shows as a frame. CallSite names that call from the source; `n`
 *   is the call (`session_start`, `PDO::__construct`, `->get`), `c` the user
 *   function that made it. When CallSite is unsure, the entry stays on the
 *   user function.
 * - Agent frames are hidden as in CollapsedProfile; a sample of the agent's
 *   own work (outermost frame the agent's) is dropped.
 * - s = events × $weight (the seconds one sample stands for), so a blocking
 *   call counts the periods it held the worker: exact to ± one period.
 *
 * @internal
 */
final class WallProfile
{
    /**
     * An entry taken after $markSec (seconds since the profiler started)
     * counts the part of its events after the mark at their own length
     * ($period each), the rest at $weight: past the long-request mark a
     * request stands for itself only.
     *
     * @param iterable<\ExcimerLogEntry|array{0: array<int, array<string, mixed>>, 1: int, 2?: float}> $entries log entries, or [trace innermost first, event count, timestamp] triples
     * @return array<string, float> "n\0c" => seconds
     */
    public static function collect(iterable $entries, float $weight, float $period = 0.0, float $markSec = \INF): array
    {
        $out = [];
        foreach ($entries as $e) {
            if ($e instanceof \ExcimerLogEntry) {
                $trace = $e->getTrace();
                $count = $e->getEventCount();
                $at = $markSec < \INF ? $e->getTimestamp() : 0.0;
            } else {
                [$trace, $count] = $e;
                $at = (float) ($e[2] ?? 0.0);
            }
            if ($count <= 0 || $trace === []) {
                continue;
            }
            $key = self::key($trace, $count);
            if ($key === null) {
                continue;
            }
            $after = $period > 0.0 && $at > $markSec ? \min($count * $period, $at - $markSec) : 0.0;
            $out[$key] = ($out[$key] ?? 0.0) + ($count - $after / ($period > 0.0 ? $period : 1.0)) * $weight + $after;
        }
        return $out;
    }

    /**
     * Names the call a request was blocked in when a timer tick came late:
     * [call, the user function that made it] when CallSite finds the call
     * at $site, else [the leaf user function, its caller]; null without a
     * stack. $stack is the tick's (outermost first, names as in `fn`),
     * $site the interrupted position (file, line, function, class).
     *
     * @param list<string> $stack
     * @param array<string, mixed>|null $site
     * @return array{0: string, 1: string}|null
     */
    public static function blocked(array $stack, ?array $site): ?array
    {
        $n = \count($stack);
        if ($n === 0) {
            return null;
        }
        return self::named($stack[$n - 1], $n > 1 ? $stack[$n - 2] : '', $site);
    }

    /**
     * Sums several collect() results and ranks them: most seconds first
     * (then name and caller), at most Messages::MAX_WALL.
     *
     * @param list<array<string, float>> $parts
     * @return list<array{n: string, c: string, s: float}>
     */
    public static function rank(array $parts): array
    {
        $sum = [];
        foreach ($parts as $part) {
            foreach ($part as $k => $s) {
                $sum[$k] = ($sum[$k] ?? 0.0) + $s;
            }
        }
        if ($sum === []) {
            return [];
        }
        $keys = \array_map('strval', \array_keys($sum));
        $vals = \array_values($sum);
        \array_multisort($vals, \SORT_DESC, \SORT_NUMERIC, $keys, \SORT_ASC, \SORT_STRING);
        $out = [];
        foreach ($keys as $i => $k) {
            if ($i >= Messages::MAX_WALL) {
                break;
            }
            [$n, $c] = \explode("\0", $k, 2);
            $out[] = ['n' => $n, 'c' => $c, 's' => \round($vals[$i], 6)];
        }
        return $out;
    }

    /**
     * "n\0c" of one entry, null for the agent's own work.
     *
     * @param array<int, array<string, mixed>> $trace innermost frame first
     */
    private static function key(array $trace, int $count): ?string
    {
        $last = \count($trace) - 1;
        $names = [];
        $leafFrame = null;
        foreach ($trace as $i => $frame) {
            $name = self::name($frame, $i === $last);
            if (Frames::isAgent($name)) {
                if ($i === $last) {
                    return null; // the agent's own work
                }
                continue;
            }
            if ($names === []) {
                $leafFrame = $i === 0 ? $frame : false;
            }
            $names[] = $name;
            if (\count($names) === 2) {
                break;
            }
        }
        if ($names === []) {
            return null;
        }
        $site = $count >= 2 && \is_array($leafFrame) ? $leafFrame : null;
        return \implode("\0", self::named(Frames::clean($names[0]), isset($names[1]) ? Frames::clean($names[1]) : '', $site));
    }

    /**
     * [the call made at $site, $leaf] when CallSite names it, else [$leaf,
     * $caller].
     *
     * @param array<string, mixed>|null $site
     * @return array{0: string, 1: string}
     */
    private static function named(string $leaf, string $caller, ?array $site): array
    {
        $call = $site !== null ? CallSite::resolve($site) : null;
        return $call !== null ? [$call, $leaf] : [$leaf, $caller];
    }

    /**
     * A frame named as Excimer's collapsed format names it; the outermost
     * top-level code is the script: `{main}`.
     *
     * @param array<string, mixed> $frame
     */
    private static function name(array $frame, bool $outermost): string
    {
        $function = $frame['function'] ?? null;
        if (!\is_string($function) || $function === '') {
            $file = \is_string($frame['file'] ?? null) ? $frame['file'] : '';
            return $outermost && !Frames::isAgent($file) ? Frames::MAIN : $file;
        }
        if (\str_starts_with($function, '{closure')) {
            return '{closure:' . ($frame['file'] ?? '') . '(' . ($frame['closure_line'] ?? 0) . ')}';
        }
        $class = $frame['class'] ?? null;
        return \is_string($class) && $class !== '' ? $class . '::' . $function : $function;
    }
}
