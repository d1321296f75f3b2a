<?php

declare(strict_types=1);

/*
 * What the call sites of statements (sql_site_frames) cost, in PHP CLI:
 *
 *   php [-d opcache.enable_cli=1] php/tests/bench/sql_site_bench.php [rounds=15] [requests=300] [depth=30]
 *
 * The application is simulated: a chain of `depth` nested functions in
 * three files of its own (controller, service, model) whose innermost ones
 * run 20 statements from 3 call sites (12, 6 and 2), through a function in a file under a
 * /vendor/ directory (a database library) that calls Runtime::sql() as
 * TracedPdo does; the statements themselves take no time, so what is
 * measured is the agent. Two measurements, each variant in its own child
 * process, the variants in a new random order every round; reported as the
 * median over the rounds:
 *
 * - per statement: Runtime::sql() called 20,000 times from that depth,
 *   sites off (sql_site_frames=0) and on (1, 5 and 8 frames); the mean per
 *   call. (The record's cap is lifted by recording into a new runtime every
 *   500 statements, which is not timed.)
 * - per request: Runtime::fromGlobals(), start(), the 20 statements,
 *   finish() with the end message built, encoded and handed to a transport
 *   that drops it; sites off and on (the default of 5 frames); the median
 *   wall time and the mean process CPU of a request, and the end message's
 *   size.
 */

if (($argv[1] ?? '') === '--child') {
    [, , $what, $frames, $n, $depth] = $argv;
    child($what, (int) $frames, (int) $n, (int) $depth);
    exit(0);
}

$rounds = (int) ($argv[1] ?? 15);
$requests = (int) ($argv[2] ?? 300);
$depth = (int) ($argv[3] ?? 30);
$variants = [
    'statement, sites off' => ['statement', 0, 20000],
    'statement, 1 frame' => ['statement', 1, 20000],
    'statement, 5 frames' => ['statement', 5, 20000],
    'statement, 8 frames' => ['statement', 8, 20000],
    'request, sites off' => ['request', 0, $requests],
    'request, 5 frames' => ['request', 5, $requests],
];
$results = [];
for ($r = 0; $r < $rounds; $r++) {
    $names = array_keys($variants);
    shuffle($names);
    foreach ($names as $name) {
        [$what, $frames, $n] = $variants[$name];
        // the children run as this process does, with or without opcache
        $out = shell_exec(implode(' ', array_map('escapeshellarg', [PHP_BINARY, '-d', 'opcache.enable_cli=' . (int) ini_get('opcache.enable_cli'),
            __FILE__, '--child', $what, (string) $frames, (string) $n, (string) $depth])));
        $results[$name][] = json_decode((string) $out, true, 4, JSON_THROW_ON_ERROR);
    }
}
$median = static function (array $xs): float {
    sort($xs);
    $n = count($xs);
    return $n % 2 ? $xs[intdiv($n, 2)] : ($xs[$n / 2 - 1] + $xs[$n / 2]) / 2;
};
printf("PHP %s, opcache %s, %d rounds, stack depth %d at the statements\n", PHP_VERSION, ini_get('opcache.enable_cli') ? 'on' : 'off', $rounds, $depth);
printf("%-22s %12s %12s %10s\n", 'variant', 'wall µs', 'CPU µs', 'end bytes');
foreach ($variants as $name => $_) {
    $rs = $results[$name];
    printf("%-22s %12.2f %12.2f %10s\n", $name, $median(array_column($rs, 'wall')), $median(array_column($rs, 'cpu')),
        isset($rs[0]['bytes']) ? (string) $rs[0]['bytes'] : '');
}

function child(string $what, int $frames, int $n, int $depth): void
{
    $tree = dirname(__DIR__, 2);
    spl_autoload_register(static function (string $class) use ($tree): void {
        if (str_starts_with($class, 'Bitville\\Apm\\')) {
            $f = $tree . '/src/' . strtr(substr($class, 13), '\\', '/') . '.php';
            if (is_file($f)) {
                require $f;
            }
        }
    });
    // The simulated application and library, written once per machine.
    $dir = sys_get_temp_dir() . '/bitville-sql-site-bench-2';
    $files = [
        'app/Controller.php' => <<<'PHP'
            <?php
            function benchController(int $depth, \Closure $leaf): void
            {
                if ($depth > 0) {
                    benchController($depth - 1, $leaf);
                    return;
                }
                benchService($leaf);
            }
            PHP,
        'app/Service.php' => <<<'PHP'
            <?php
            function benchService(\Closure $leaf): void
            {
                benchModel($leaf, 12);
                benchModel($leaf, 6);
                benchModel($leaf, 2);
            }
            PHP,
        'app/Model.php' => <<<'PHP'
            <?php
            function benchModel(\Closure $leaf, int $n): void
            {
                for ($i = 0; $i < $n; $i++) {
                    benchQuery($leaf);
                }
            }
            PHP,
        'vendor/acme/db/Query.php' => <<<'PHP'
            <?php
            function benchQuery(\Closure $leaf): void
            {
                $leaf();
            }
            PHP,
    ];
    foreach ($files as $name => $code) {
        $path = "$dir/$name";
        if (!is_file($path)) {
            @mkdir(dirname($path), 0777, true);
            file_put_contents("$path.tmp", $code);
            rename("$path.tmp", $path);
        }
        require_once $path;
    }
    $transport = new class () implements \Bitville\Apm\Transport\Transport {
        public int $bytes = 0;

        public function send(string $payload): bool
        {
            $this->bytes = strlen($payload);
            return true;
        }
    };
    $config = \Bitville\Apm\Config::fromValues([
        'enabled' => '1', 'project' => 'bench', 'socket' => '/nonexistent.sock', 'spool_dir' => 'off',
        'profiler' => 'off', 'sql_site_frames' => (string) $frames,
    ]);
    $server = ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/orders/42', 'REQUEST_TIME_FLOAT' => microtime(true)];
    $runtime = static fn (): \Bitville\Apm\Runtime => \Bitville\Apm\Runtime::fromGlobals($config, $server, $transport, 'fpm-fcgi', status: static fn (): int => 200);
    // The application's stack is `depth` frames, minus the 4 of the
    // service, model, library and statement.
    $chain = max(0, $depth - 4);
    $cpu = static function (): float {
        $r = getrusage();
        return $r['ru_utime.tv_sec'] * 1e6 + $r['ru_utime.tv_usec'] + $r['ru_stime.tv_sec'] * 1e6 + $r['ru_stime.tv_usec'];
    };

    if ($what === 'statement') {
        $rt = $runtime();
        $count = 0;
        $leaf = static function () use (&$rt, &$count): void {
            $rt->sql('SELECT 1', 1000, 1);
            $count++;
        };
        $ns = 0;
        $c = 0.0;
        $done = 0;
        while ($done < $n) {
            $rt = $runtime();
            $c0 = $cpu();
            $t = hrtime(true);
            // 20 statements a pass; a new record every 500
            for ($k = 0; $k < 25; $k++) {
                benchController($chain, $leaf);
            }
            $ns += hrtime(true) - $t;
            $c += $cpu() - $c0;
            $done += 500;
        }
        echo json_encode(['wall' => $ns / 1e3 / $done, 'cpu' => $c / $done]);
        return;
    }

    $walls = [];
    $one = static function () use ($runtime, $chain): void {
        $rt = $runtime();
        $rt->start();
        benchController($chain, static function () use ($rt): void {
            $rt->sql('SELECT 1', 1000, 1);
        });
        $rt->finish(false);
    };
    for ($i = 0; $i < 20; $i++) {
        $one();
    }
    $c0 = $cpu();
    for ($i = 0; $i < $n; $i++) {
        $t = hrtime(true);
        $one();
        $walls[] = (hrtime(true) - $t) / 1e3;
    }
    $c = $cpu() - $c0;
    sort($walls);
    echo json_encode(['wall' => $walls[intdiv(count($walls), 2)], 'cpu' => $c / $n, 'bytes' => $transport->bytes]);
}
