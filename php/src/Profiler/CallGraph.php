<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Reduces an xhprof-format call graph (tideways_xhprof_disable(),
 * xhprof_disable(): "parent==>child" => ['ct' => calls, 'wt' => µs], plus
 * "child" alone for calls whose caller was not traced) to per-function self
 * and inclusive wall time and call counts.
 *
 * Rules:
 * - xhprof names the frames of a function already on the stack `f@1`,
 *   `f@2`, … Self time of every depth adds up to f's self; only the
 *   outermost frames (no `@`) give f's inclusive time, so recursion is not
 *   counted twice; calls of every depth count.
 * - On PHP 8 each internal-function call shows up twice, as `X==>X@1`
 *   (seen here with tideways_xhprof 5.0.4 on PHP 8.2, and reported for
 *   xhprof on PHP 8.2). Such an edge of an internal function is not counted
 *   as a call; its time is handled like recursion.
 * - `main()` (the profiler's own root) and calls without a traced caller
 *   hang under `{main}`, the script body, whose inclusive time is the
 *   profiled wall time minus the agent's own work.
 * - Agent frames (namespace Bitville\Apm\): a top-level call to a function
 *   on the agent's shutdown path ($lifecycle, the names on the stack when
 *   the profile was stopped) is the agent's own work — it and everything
 *   reached only through it are dropped. Any other agent frame (a wrapper
 *   such as TracedPdo::query) is transparent: it is not listed, its self
 *   time counts as its callers' self time, its callees stay.
 * - self ≤ incl for every function.
 *
 * @internal
 */
final class CallGraph
{
    private const ROOT = '';

    /**
     * @param array<string,mixed> $data         the profiler's result
     * @param float               $elapsed      seconds between enable and disable, 0 when unknown
     * @param array<string,bool>  $lifecycle    xhprof names of the agent's frames at stop time
     * @param (callable(string):bool)|null $isInternal whether a function name is a PHP internal function
     * @return list<array{n:string,self:float,incl:float,calls:int}>
     */
    public static function reduce(array $data, float $elapsed, array $lifecycle = [], ?callable $isInternal = null): array
    {
        $isInternal ??= [self::class, 'isInternalFunction'];

        // Parse edges: [parent raw name or ROOT, child raw name, calls, wall µs].
        /** @var list<array{0:string,1:string,2:int,3:float}> $edges */
        $edges = [];
        /** @var array<string,list<int>> $out raw node => indexes of its outgoing edges */
        $out = [];
        foreach ($data as $key => $v) {
            if (!\is_array($v)) {
                continue;
            }
            $key = (string) $key;
            $pos = \strpos($key, '==>');
            if ($pos === false) {
                $parent = self::ROOT;
                $child = $key;
            } else {
                $parent = \substr($key, 0, $pos);
                $child = \substr($key, $pos + 3);
                if ($parent === 'main()') {
                    $parent = self::ROOT;
                }
            }
            if ($child === 'main()' || $child === '') {
                continue; // the profiler's own root marker
            }
            $ct = (int) ($v['ct'] ?? 0);
            $wt = (float) ($v['wt'] ?? 0);
            if ($ct < 0) {
                $ct = 0;
            }
            if (!\is_finite($wt) || $wt < 0) {
                $wt = 0.0;
            }
            $out[$parent][] = \count($edges);
            $edges[] = [$parent, $child, $ct, $wt];
        }

        // Live nodes: reachable from the root without passing through a
        // top-level call on the agent's shutdown path.
        $deadRootWall = 0.0;
        /** @var array<string,bool> $live */
        $live = [self::ROOT => true];
        $queue = [self::ROOT];
        while ($queue !== []) {
            $node = \array_pop($queue);
            foreach ($out[$node] ?? [] as $i) {
                $child = $edges[$i][1];
                if ($node === self::ROOT && isset($lifecycle[self::base($child)])) {
                    $deadRootWall += $edges[$i][3];
                    continue;
                }
                if (!isset($live[$child])) {
                    $live[$child] = true;
                    $queue[] = $child;
                }
            }
        }

        // Per raw node: inclusive wall (live incoming edges), wall of callees, calls.
        $in = [];
        $callees = [];
        $calls = [];
        /** @var array<string,list<array{0:string,1:float}>> $parents raw node => [parent, wall] */
        $parents = [];
        $internal = [];
        foreach ($edges as [$parent, $child, $ct, $wt]) {
            if (!isset($live[$parent]) || !isset($live[$child])) {
                continue;
            }
            if ($parent === self::ROOT && isset($lifecycle[self::base($child)])) {
                continue;
            }
            $in[$child] = ($in[$child] ?? 0.0) + $wt;
            $callees[$parent] = ($callees[$parent] ?? 0.0) + $wt;
            $parents[$child][] = [$parent, $wt];
            $b = self::base($child);
            $duplicate = false;
            if ($b !== $child && $parent !== self::ROOT && self::base($parent) === $b) {
                $duplicate = $internal[$b] ??= (bool) $isInternal($b);
            }
            if (!$duplicate) {
                $calls[$child] = ($calls[$child] ?? 0) + $ct;
            }
        }

        // Self per raw node; agent nodes hand theirs to their callers.
        $self = [];
        foreach ($in as $node => $wall) {
            $self[$node] = \max(0.0, $wall - ($callees[$node] ?? 0.0));
        }
        $extra = [];
        foreach ($self as $node => $s) {
            $node = (string) $node;
            if ($s > 0.0 && Frames::isAgent(self::base($node))) {
                self::handUp($node, $s, $parents, $extra, 0);
            }
        }

        // Per function (base name).
        $fn = [];
        foreach ($in as $node => $wall) {
            $node = (string) $node;
            $b = self::base($node);
            if (Frames::isAgent($b)) {
                continue;
            }
            $name = Frames::clean($b);
            $f = $fn[$name] ?? ['n' => $name, 'self' => 0.0, 'incl' => 0.0, 'calls' => 0];
            $f['self'] += $self[$node] + ($extra[$node] ?? 0.0);
            if ($b === $node) {
                $f['incl'] += $wall;
            }
            $f['calls'] += $calls[$node] ?? 0;
            $fn[$name] = $f;
        }

        // {main}: the script body.
        $rootCallees = $callees[self::ROOT] ?? 0.0;
        $mainIncl = $elapsed > 0.0 ? \max($elapsed * 1e6 - $deadRootWall, $rootCallees) : $rootCallees;
        $mainSelf = \max(0.0, $mainIncl - $rootCallees) + ($extra[self::ROOT] ?? 0.0);
        $main = $fn[Frames::MAIN] ?? ['n' => Frames::MAIN, 'self' => 0.0, 'incl' => 0.0, 'calls' => 0];
        $main['self'] += $mainSelf;
        $main['incl'] = \max($main['incl'], $mainIncl);
        $main['calls'] = \max(1, $main['calls']);
        $fn[Frames::MAIN] = $main;

        $list = [];
        foreach ($fn as $f) {
            $incl = \round($f['incl'] / 1e6, 6);
            $selfSec = \min(\round($f['self'] / 1e6, 6), $incl);
            $list[] = ['n' => $f['n'], 'self' => $selfSec, 'incl' => $incl, 'calls' => $f['calls']];
        }
        return Frames::rankFunctions($list);
    }

    /**
     * The function a raw xhprof node name stands for: `f@2` → `f`.
     */
    public static function base(string $node): string
    {
        $at = \strrpos($node, '@');
        if ($at === false || $at === \strlen($node) - 1) {
            return $node;
        }
        $depth = \substr($node, $at + 1);
        return \ctype_digit($depth) ? \substr($node, 0, $at) : $node;
    }

    /**
     * Whether $name (`function` or `Class::method`) is built into PHP or an
     * extension. Only asked for names that xhprof reports as calling
     * themselves directly, so the reflection stays off the common path.
     */
    public static function isInternalFunction(string $name): bool
    {
        try {
            $sep = \strpos($name, '::');
            if ($sep === false) {
                return \function_exists($name) && (new \ReflectionFunction($name))->isInternal();
            }
            $class = \substr($name, 0, $sep);
            $method = \substr($name, $sep + 2);
            if (!\class_exists($class, false) && !\interface_exists($class, false) && !\trait_exists($class, false)) {
                return false;
            }
            return \method_exists($class, $method) && (new \ReflectionMethod($class, $method))->isInternal();
        } catch (\Throwable) {
            return false;
        }
    }

    /**
     * Gives $amount µs of an agent node's self time to its callers, split by
     * the wall time of each call edge; agent callers pass it on in turn.
     *
     * @param array<string,list<array{0:string,1:float}>> $parents
     * @param array<string,float> $extra
     */
    private static function handUp(string $node, float $amount, array $parents, array &$extra, int $depth): void
    {
        $edges = $parents[$node] ?? [];
        $total = 0.0;
        foreach ($edges as [, $wt]) {
            $total += $wt;
        }
        if ($depth > 16 || $edges === [] || $total <= 0.0) {
            $extra[self::ROOT] = ($extra[self::ROOT] ?? 0.0) + $amount;
            return;
        }
        foreach ($edges as [$parent, $wt]) {
            $share = $amount * $wt / $total;
            if ($parent !== self::ROOT && Frames::isAgent(self::base($parent))) {
                self::handUp($parent, $share, $parents, $extra, $depth + 1);
            } else {
                $extra[$parent] = ($extra[$parent] ?? 0.0) + $share;
            }
        }
    }
}
