<?php

declare(strict_types=1);

/*
 * Micro-benchmark of the profiler's per-request cost in PHP CLI.
 *
 *   php php/tests/Profiler/bench/profiler_bench.php [rounds=7] [iterations=60] [work_ms=10]
 *
 * One "request" = create the profiler, start it, run a CPU-bound function of
 * about work_ms, stop it, json_encode() what stop() returned. The variants
 * (no profiler twice, Excimer at several periods, tideways) all run, in a
 * new random order, in every iteration so that machine noise and position
 * effects hit them alike; each round takes the
 * median of every variant; the overhead is reported as the median over the
 * rounds of (variant / baseline − 1), for wall time and for process CPU time
 * (getrusage, which includes the threads Excimer's timer spawns).
 */

require __DIR__ . '/../autoload.php';

use Bitville\Apm\Profiler\ProfilerFactory;

$rounds = (int) ($argv[1] ?? 7);
$iterations = (int) ($argv[2] ?? 60);
$workMs = (float) ($argv[3] ?? 10);

/*
 * The workload: 25 nested frames (a framework's dispatch), then a loop of
 * small function calls (the application's code), like a PHP web request.
 */
function work(int $n, int $depth = 25): float
{
    return $depth > 0 ? work($n, $depth - 1) : leafLoop($n);
}

function leafLoop(int $n): float
{
    $x = 0.0;
    for ($i = 0; $i < $n; $i++) {
        $x += step($i);
    }
    return $x;
}

function step(int $i): float
{
    return $i * 0.5 + strlen((string) $i);
}

function cpuNow(): float
{
    $r = getrusage();
    return $r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6 + $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec'] / 1e6;
}

function median(array $a): float
{
    sort($a);
    $n = count($a);
    return $n % 2 ? $a[intdiv($n, 2)] : ($a[$n / 2 - 1] + $a[$n / 2]) / 2;
}

// calibrate the loop to about $workMs
$n = 20000;
for ($k = 0; $k < 5; $k++) {
    $t = hrtime(true);
    work($n);
    $d = (hrtime(true) - $t) / 1e6;
    $n = max(1000, (int) ($n * $workMs / $d));
}

$variants = ['baseline' => null, 'baseline (A/A control)' => null];
foreach ([0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001] as $p) {
    $variants[sprintf('excimer %gms', $p * 1000)] = ['excimer', $p, false];
}
if (function_exists('tideways_xhprof_enable')) {
    $variants['tideways+excimer 10ms'] = ['tideways', 0.01, true];
}

$wall = $cpu = $samples = [];
$sizes = [];
for ($r = 0; $r < $rounds; $r++) {
    $w = $c = [];
    $names = array_keys($variants);
    for ($i = 0; $i < $iterations; $i++) {
        shuffle($names); // no variant always runs right after another
        foreach ($names as $name) {
            $v = $variants[$name];
            $c0 = cpuNow();
            $t0 = hrtime(true);
            if ($v === null) {
                work($n);
            } else {
                $p = ProfilerFactory::create($v[0], $v[1], $v[2]);
                $p->start();
                work($n);
                $res = $p->stop();
                $json = json_encode($res);
                $sizes[$name][] = strlen((string) $json);
                $samples[$name][] = array_sum(array_column($res['stacks'], 'n'));
            }
            $w[$name][] = (hrtime(true) - $t0) / 1e3;
            $c[$name][] = (cpuNow() - $c0) * 1e6;
        }
    }
    foreach ($variants as $name => $v) {
        $wall[$name][] = median($w[$name]);
        $cpu[$name][] = median($c[$name]);
    }
}

printf("# PHP %s, excimer %s, %d rounds x %d iterations, work %.1f ms (n=%d), load %s\n",
    PHP_VERSION, phpversion('excimer') ?: '-', $rounds, $iterations, median($wall['baseline']) / 1e3, $n,
    implode(' ', array_map(fn ($x) => sprintf('%.2f', $x), sys_getloadavg() ?: [])));
printf("%-24s %10s %9s %9s %10s %9s %9s %8s %8s\n", 'variant', 'wall us', 'wall +%', 'min..max', 'cpu us', 'cpu +%', 'min..max', 'samples', 'json B');
foreach ($variants as $name => $v) {
    $ow = $oc = [];
    for ($r = 0; $r < $rounds; $r++) {
        $ow[] = ($wall[$name][$r] / $wall['baseline'][$r] - 1) * 100;
        $oc[] = ($cpu[$name][$r] / $cpu['baseline'][$r] - 1) * 100;
    }
    printf("%-24s %10.1f %+8.2f%% %4.1f..%-4.1f %10.1f %+8.2f%% %4.1f..%-4.1f %8.2f %8.0f\n",
        $name, median($wall[$name]), median($ow), min($ow), max($ow), median($cpu[$name]), median($oc), min($oc), max($oc),
        isset($samples[$name]) ? array_sum($samples[$name]) / count($samples[$name]) : 0,
        isset($sizes[$name]) ? array_sum($sizes[$name]) / count($sizes[$name]) : 0);
}
