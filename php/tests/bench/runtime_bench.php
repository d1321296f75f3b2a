<?php

declare(strict_types=1);

/*
 * The agent's per-request cost in PHP CLI, one tree of php/ against
 * another (a checkout of an earlier commit: `git archive REV php | tar -x -C /tmp/base`):
 *
 *   php php/tests/bench/runtime_bench.php BASE_PHP_DIR [rounds=9] [iterations=400] [work_ms=2]
 *
 * One "request" = Runtime::fromGlobals() with the production profiler and
 * timer factories and a transport that drops what it is given, start(),
 * work_ms of CPU in a function, finish(). Variants, each in its own process,
 * in a new random order every round: no agent (the work alone); a request
 * not drawn for profiling (excimer_request_rate=0: the short request's
 * path) in both trees; a drawn request (rate 1) in both trees (the base
 * runs the CPU profiler, this tree the CPU and the real-clock one). Per
 * variant: the median wall time of a request and the mean process CPU per
 * request (getrusage over the loop: includes Excimer's timer threads);
 * reported as medians over the rounds, minus the no-agent variant.
 */

if (($argv[1] ?? '') === '--child') {
    [, , $tree, $variant, $iterations, $workMs] = $argv;
    child($tree, $variant, (int) $iterations, (float) $workMs);
    exit(0);
}

$base = $argv[1] ?? '';
if ($base === '' || !is_file($base . '/src/Runtime.php')) {
    fwrite(STDERR, "usage: php runtime_bench.php BASE_PHP_DIR [rounds] [iterations] [work_ms]\n");
    exit(2);
}
$here = dirname(__DIR__, 2);
$rounds = (int) ($argv[2] ?? 9);
$iterations = (int) ($argv[3] ?? 400);
$workMs = (float) ($argv[4] ?? 2);
$variants = [
    'none' => [$here, 'none'],
    'base short' => [$base, 'short'],
    'new short' => [$here, 'short'],
    'base drawn' => [$base, 'drawn'],
    'new drawn' => [$here, 'drawn'],
];
$results = [];
for ($r = 0; $r < $rounds; $r++) {
    $names = array_keys($variants);
    shuffle($names);
    foreach ($names as $name) {
        [$tree, $variant] = $variants[$name];
        $out = shell_exec(implode(' ', array_map('escapeshellarg', [PHP_BINARY, __FILE__, '--child', $tree, $variant, (string) $iterations, (string) $workMs])));
        $results[$name][] = json_decode((string) $out, true, 4, JSON_THROW_ON_ERROR);
    }
}
$median = static function (array $xs): float {
    sort($xs);
    $n = count($xs);
    return $n % 2 ? $xs[intdiv($n, 2)] : ($xs[$n / 2 - 1] + $xs[$n / 2]) / 2;
};
$none = ['wall' => $median(array_column($results['none'], 'wall')), 'cpu' => $median(array_column($results['none'], 'cpu'))];
printf("%d rounds × %d requests of %.1f ms CPU work; agent cost = variant − no agent (µs per request)\n", $rounds, $iterations, $workMs);
printf("%-12s %12s %12s\n", 'variant', 'wall (med)', 'CPU (mean)');
foreach ($variants as $name => $_) {
    $w = $median(array_column($results[$name], 'wall'));
    $c = $median(array_column($results[$name], 'cpu'));
    if ($name === 'none') {
        printf("%-12s %12.1f %12.1f   (the work itself)\n", $name, $w, $c);
        continue;
    }
    printf("%-12s %12.1f %12.1f\n", $name, $w - $none['wall'], $c - $none['cpu']);
}

function child(string $tree, string $variant, int $iterations, float $workMs): void
{
    spl_autoload_register(static function (string $class) use ($tree): void {
        if (str_starts_with($class, 'Bitville\\Apm\\')) {
            $f = $tree . '/src/' . strtr(substr($class, 13), '\\', '/') . '.php';
            if (is_file($f)) {
                require $f;
            }
        }
    });
    $transport = new class () implements \Bitville\Apm\Transport\Transport {
        public function send(string $payload): bool
        {
            return true;
        }
    };
    $config = \Bitville\Apm\Config::fromValues([
        'enabled' => '1', 'project' => 'bench', 'socket' => '/nonexistent.sock', 'spool_dir' => 'off',
        'excimer_request_rate' => $variant === 'drawn' ? '1' : '0',
    ]);
    $server = ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/quote/42', 'REQUEST_TIME_FLOAT' => microtime(true)];
    $n = (int) ($workMs * 30000); // about 30 sqrt() per µs here
    $walls = [];
    // warm up
    for ($i = 0; $i < 20; $i++) {
        one($variant, $config, $server, $transport, $n);
    }
    $r0 = getrusage();
    for ($i = 0; $i < $iterations; $i++) {
        $t = hrtime(true);
        one($variant, $config, $server, $transport, $n);
        $walls[] = (hrtime(true) - $t) / 1e3;
    }
    $r1 = getrusage();
    $cpu = static fn (array $r): float => $r['ru_utime.tv_sec'] * 1e6 + $r['ru_utime.tv_usec'] + $r['ru_stime.tv_sec'] * 1e6 + $r['ru_stime.tv_usec'];
    sort($walls);
    echo json_encode(['wall' => $walls[intdiv(count($walls), 2)], 'cpu' => ($cpu($r1) - $cpu($r0)) / $iterations]);
}

function one(string $variant, \Bitville\Apm\Config $config, array $server, $transport, int $n): void
{
    if ($variant === 'none') {
        appWork($n);
        return;
    }
    $rt = \Bitville\Apm\Runtime::fromGlobals($config, $server, $transport, 'fpm-fcgi', status: static fn (): int => 200);
    $rt->start();
    appWork($n);
    $rt->finish(false);
}

function appWork(int $n): float
{
    $x = 0.0;
    for ($i = 0; $i < $n; $i++) {
        $x += sqrt($i);
    }
    return $x;
}
