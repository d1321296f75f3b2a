<?php

declare(strict_types=1);

/*
 * The instructions each piece of the agent's request path runs once PHP
 * has run it before in the same process ("warm": the functions' run-time
 * caches filled, the property and constant lookups done), under valgrind's
 * callgrind, for one or more trees of php/ side by side:
 *
 *   php php/tests/bench/warm_instructions.php [--runs=1000] TREE_PHP_DIR...
 *   BENCH_BEFORE=/tmp/old/php make bench-php-warm     # that tree beside this one
 *
 * Each piece runs in a fresh `php -n` CLI process (Excimer and opcache
 * loaded, nothing else: a loaded call-graph extension changes the count),
 * once for 0 and once for --runs iterations after a first call; the
 * difference of the two totals divided by --runs is its warm count.
 * php-fpm runs each piece once a request, cold: `make
 * bench-php-instructions` counts that, and the difference between the two
 * is what PHP's first use of each function, class and property costs a
 * request (docs/performance.md, "Warm and cold"). The pieces:
 *
 *   config      Config::load() of a php-fpm request's $_SERVER (~70 entries, 4 settings)
 *   record      Runtime::fromGlobals(): ids, URI, endpoint, the request's objects
 *   comment     Runtime::commentSql() of a statement
 *   sql         Runtime::sql() of a statement, with its call site held
 *               (a new runtime before the record's MAX_DEFERRED_SITES run out)
 *   start       the start message, built and encoded
 *   end         the end message of four statements, built and encoded
 *   begin       Runtime::start(): the timer armed, the start built and sent
 *               (the piece minus `record`)
 *   finish      Runtime::finish() of a request without statements: the timer
 *               stopped, the end measured, built and sent (minus `record`)
 *   request     all of it but the handlers: Config::load(), fromGlobals(),
 *               start() (timer and start message), four statements, finish();
 *               Excimer drawn for no request (excimer_request_rate=0)
 */

if (($argv[1] ?? '') === '--child') {
    [, , $tree, $piece, $runs] = $argv;
    child($tree, $piece, (int) $runs);
    exit(0);
}

$runs = 1000;
$trees = [];
foreach (\array_slice($argv, 1) as $arg) {
    if (\str_starts_with($arg, '--runs=')) {
        $runs = (int) \substr($arg, 7);
    } elseif (\is_file($arg . '/src/Runtime.php')) {
        $trees[] = \rtrim($arg, '/');
    } else {
        \fwrite(\STDERR, "usage: php warm_instructions.php [--runs=N] TREE_PHP_DIR...\n$arg is not a php/ tree\n");
        exit(2);
    }
}
if ($trees === [] || $runs < 1) {
    \fwrite(\STDERR, "usage: php warm_instructions.php [--runs=N] TREE_PHP_DIR...\n");
    exit(2);
}
if (\trim((string) \shell_exec('command -v valgrind')) === '') {
    \fwrite(\STDERR, "valgrind not found (Debian package valgrind; `make deps` installs it)\n");
    exit(1);
}

$pieces = ['config', 'record', 'comment', 'sql', 'start', 'end', 'begin', 'finish', 'request'];
\printf("%-10s", 'piece');
foreach ($trees as $i => $tree) {
    \printf(" %14s", 'tree ' . ($i + 1));
}
echo "   (instructions per call, warm; $runs calls)\n";
foreach ($pieces as $piece) {
    \printf("%-10s", $piece);
    foreach ($trees as $tree) {
        $n = count_instructions($tree, $piece, $runs) - count_instructions($tree, $piece, 0);
        \printf(" %14s", \number_format($n / $runs, 0));
    }
    echo "\n";
}
foreach ($trees as $i => $tree) {
    echo 'tree ' . ($i + 1) . ": $tree\n";
}

/** The instructions callgrind counts for one child process. */
function count_instructions(string $tree, string $piece, int $runs): int
{
    $out = \tempnam(\sys_get_temp_dir(), 'cg');
    $php = \escapeshellarg(\PHP_BINARY);
    $cmd = \sprintf(
        'valgrind --tool=callgrind --callgrind-out-file=%s %s -n -d extension=excimer.so -d zend_extension=opcache.so -d opcache.enable_cli=1 -d opcache.jit=0 %s --child %s %s %d 2>&1',
        \escapeshellarg($out),
        $php,
        \escapeshellarg(__FILE__),
        \escapeshellarg($tree),
        \escapeshellarg($piece),
        $runs,
    );
    $log = (string) \shell_exec($cmd);
    @\unlink($out);
    if (\preg_match('/Collected : (\d+)/', $log, $m) !== 1) {
        \fwrite(\STDERR, "callgrind failed for $piece in $tree:\n$log\n");
        exit(1);
    }
    return (int) $m[1];
}

function child(string $tree, string $piece, int $runs): void
{
    if (\is_file($tree . '/bundle.php')) {
        require $tree . '/bundle.php';
    }
    \spl_autoload_register(static function (string $class) use ($tree): void {
        $file = $tree . '/src/' . \strtr(\substr($class, 13), '\\', '/') . '.php';
        if (\str_starts_with($class, 'Bitville\\Apm\\') && \is_file($file)) {
            require $file;
        }
    });
    // A php-fpm request's $_SERVER: FastCGI params and headers, ~70 entries.
    $server = ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/quote/7', 'SCRIPT_NAME' => '/index.php',
        'REQUEST_TIME_FLOAT' => \microtime(true), 'BITVILLE_APM_ENABLED' => '1', 'BITVILLE_APM_PROJECT' => 'bench',
        'BITVILLE_APM_SOCKET' => '/run/bitville-apm/agent.sock',
        // drawn for profiling by no request: the count would follow the draws
        'BITVILLE_APM_EXCIMER_REQUEST_RATE' => '0'];
    for ($i = \count($server); $i < 70; $i++) {
        $server['HTTP_X_BENCH_' . $i] = 'value ' . $i;
    }
    $drop = new class implements \Bitville\Apm\Transport\Transport {
        public function send(string $payload): bool
        {
            return true;
        }
    };
    $statements = ['SELECT * FROM quote WHERE id = $1', 'SELECT * FROM items WHERE quote_id = $1',
        'SELECT name FROM customer WHERE id = $1', 'UPDATE quote SET views = views + 1 WHERE id = $1'];
    $config = \Bitville\Apm\Config::load($server, false);
    $runtime = fn (): \Bitville\Apm\Runtime => \Bitville\Apm\Runtime::fromGlobals($config, $server, $drop, 'fpm-fcgi');
    $rt = $runtime();
    $messages = new \Bitville\Apm\Messages(new \Bitville\Apm\Redactor(), $config->sqlMaxLength, $config->slowThresholdMs);
    $record = $runtime()->record;
    foreach ($statements as $q) {
        $record->addSql(\Bitville\Apm\SqlCommenter::apply($q, $record->sqlComment(false)), 0.00012, 1);
    }
    $f = match ($piece) {
        'config' => static fn () => \Bitville\Apm\Config::load($server, false),
        'record' => $runtime,
        'comment' => static fn () => $rt->commentSql($statements[0]),
        // a new runtime before the held backtraces run out, past which a
        // site is formatted at once: the usual request holds them all
        'sql' => static function () use (&$rt, $runtime, $statements): void {
            static $n = 0;
            if (++$n % (\Bitville\Apm\RequestRecord::MAX_DEFERRED_SITES - 4) === 0) {
                $rt = $runtime();
            }
            $rt->sql($statements[0], 120000, 1);
        },
        'start' => static fn () => \Bitville\Apm\Encoder::json($messages->start($record, 1764294512.5, 0)),
        'end' => static fn () => \Bitville\Apm\Encoder::json($messages->end($record, 1764294512.6, 0, 0.01, 0.002, 0.0, 2097152, 200, null, 'none')),
        'begin' => static fn () => $runtime()->start(),
        'finish' => static fn () => $runtime()->finish(false),
        'request' => static function () use ($config, $server, $drop, $statements): void {
            $r = \Bitville\Apm\Runtime::fromGlobals(\Bitville\Apm\Config::load($server, false), $server, $drop, 'fpm-fcgi', status: static fn (): int => 200);
            $r->start();
            foreach ($statements as $q) {
                $r->sql($r->commentSql($q), 120000, 1);
            }
            $r->finish(false);
        },
        default => throw new \InvalidArgumentException("unknown piece $piece"),
    };
    $f(); // the first call: cold
    for ($i = 0; $i < $runs; $i++) {
        $f();
    }
}
