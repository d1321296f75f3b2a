<?php

declare(strict_types=1);

/*
 * The agent's per-request work inside php-fpm, phase by phase. Served as the
 * request's own script (no auto_prepend_file), it does what bootstrap.php,
 * Agent::boot() and the end of the request do, calling the agent's real
 * methods, and answers with the wall time of each phase in nanoseconds
 * (hrtime) as one JSON object. BenchmarkPHPPhases (cmd/bitville-apm) runs
 * it; the pool's env[BITVILLE_APM_*] configure the agent as in production,
 * APP_DB_DSN and APP_DB_USER name the PostgreSQL database of the example
 * shop.
 *
 * Where a phase is private inside one agent method, the method is timed
 * whole and split with the seams Runtime::fromGlobals() takes (transport,
 * profiler and timer factories) and Runtime::beforeEnd(); the wrappers cost
 * a closure call each (well under a microsecond):
 *
 *   load      require bundle.php and register an autoloader for the rest of
 *             Bitville\Apm\ (nothing to require when opcache.preload has
 *             the classes)
 *   config    Config::load($_SERVER) and the socket's file_exists()
 *   record    Runtime::fromGlobals(): ids, endpoint, redactor, spool,
 *             channel, messages, the UnixDatagramTransport
 *   install   Runtime::install(): error, exception and shutdown handlers
 *   start     Runtime::start() up to the profiler: the progress timer
 *             (timer), building and encoding the start message (start_build),
 *             sending it (start_send)
 *   profiler  the rest of Runtime::start(): ProfilerFactory::create() and
 *             the profiler's start() (only on requests drawn by
 *             excimer_request_rate: "drawn" in the answer)
 *   app       the application: the four statements of the shop's
 *             GET /quote/{id} through TracedPdo (app_connect: new TracedPdo,
 *             one connection per request as the shop makes)
 *   end_measure  Runtime::finish(false) up to Runtime::beforeEnd(): the
 *             timer's stop, error_get_last(), the status, clocks, getrusage,
 *             peak memory, the profiler's stop() (end_profiler_stop)
 *   end_build Messages::end() and Encoder::encode() of the end message
 *   end_send  the transport's send() of it, and what finish() does after
 *
 * finish(false) skips fastcgi_finish_request(), which would end the response
 * that carries these figures. "warm_*" repeat a phase in the same request
 * once its code has run (the second call's cost: without PHP's per-request
 * first-call work); warm_*_encode re-encode the payloads that were sent
 * (decoded from their JSON), to split *_build into building and encoding.
 *
 * ?agent=0 runs only the application's work, with plain PDO (app_connect,
 * app): the worker's CPU with and without the agent's phases, and what
 * TracedPdo adds to the statements.
 */

use Bitville\Apm\Agent;
use Bitville\Apm\Config;
use Bitville\Apm\Encoder;
use Bitville\Apm\Profiler\Profiler;
use Bitville\Apm\Profiler\ProfilerFactory;
use Bitville\Apm\Profiler\ProgressTimer;
use Bitville\Apm\Runtime;
use Bitville\Apm\Transport\Transport;
use Bitville\Apm\Transport\UnixDatagramTransport;

/** The shop's GET /quote/{id} statements, order 7; returns rows fetched. */
function bench_quote(\PDO $db): int
{
    $stmt = $db->prepare('SELECT o.id, o.customer_id FROM orders o WHERE o.id = ?');
    $stmt->execute([7]);
    $order = $stmt->fetch(\PDO::FETCH_ASSOC);
    if ($order === false) {
        throw new \RuntimeException('order 7 not found');
    }
    $stmt = $db->prepare('SELECT c.country FROM customers c WHERE c.id = ?');
    $stmt->execute([$order['customer_id']]);
    $country = (string) $stmt->fetchColumn();
    $stmt = $db->prepare('SELECT p.sku, i.price_cents FROM order_items i JOIN products p ON p.id = i.product_id WHERE i.order_id = ? ORDER BY i.id');
    $stmt->execute([(int) $order['id']]);
    $items = $stmt->fetchAll(\PDO::FETCH_ASSOC);
    $stmt = $db->prepare('SELECT rate FROM tax_rates WHERE country = ?');
    $stmt->execute([$country]);
    $stmt->fetchColumn();
    return 3 + count($items);
}

function bench_connect(string $class): \PDO
{
    $user = (string) ($_SERVER['APP_DB_USER'] ?? '');
    return new $class((string) ($_SERVER['APP_DB_DSN'] ?? ''), $user === '' ? null : $user, null, [\PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION]);
}

function bench_answer(int $status, array $body): never
{
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body, JSON_THROW_ON_ERROR), "\n";
    exit;
}

$ns = [];
$withAgent = ($_GET['agent'] ?? '1') !== '0';

if (!$withAgent) {
    $t = hrtime(true);
    $db = bench_connect(\PDO::class);
    $t1 = hrtime(true);
    bench_quote($db);
    $t2 = hrtime(true);
    $ns['app_connect'] = $t1 - $t;
    $ns['app'] = $t2 - $t1;
    bench_answer(200, ['agent' => false, 'ns' => $ns]);
}

$php = dirname(__DIR__, 2);

// load
$t = hrtime(true);
$preloaded = class_exists(Agent::class, false);
spl_autoload_register(static function (string $class) use ($php): void {
    if (strncmp($class, 'Bitville\\Apm\\', 13) === 0) {
        $file = $php . '/src/' . strtr(substr($class, 13), '\\', '/') . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});
if (!$preloaded) {
    require $php . '/bundle.php';
}
$ns['load'] = hrtime(true) - $t;

// config
$t = hrtime(true);
$config = Config::load($_SERVER);
$on = $config->enabled && ($config->spoolDirIsExplicit() || file_exists($config->socket));
$ns['config'] = hrtime(true) - $t;
if (!$on) {
    bench_answer(500, ['error' => 'the agent is not enabled or the socket ' . $config->socket . ' does not exist']);
}

// The seams: each records when the runtime calls into it.
$mark = [];
$sends = [];
$payloads = [];
$transport = new class (new UnixDatagramTransport($config->socket), $sends, $payloads) implements Transport {
    /** @param list<array{int, int}> $sends @param list<string> $payloads */
    public function __construct(private readonly Transport $inner, private array &$sends, private array &$payloads)
    {
    }

    public function send(string $payload): bool
    {
        $t = hrtime(true);
        $ok = $this->inner->send($payload);
        $this->sends[] = [$t, hrtime(true)];
        $this->payloads[] = $payload;
        return $ok;
    }
};
$timers = static function (float $after, float $interval, callable $tick) use (&$mark): ?ProgressTimer {
    $mark['timer0'] = hrtime(true);
    $timer = ProgressTimer::start($after, $interval, $tick);
    $mark['timer1'] = hrtime(true);
    return $timer;
};
$profilers = static function (string $setting, float $period, bool $callGraph, float $rate, bool $sample, float $wallPeriod) use (&$mark): ?Profiler {
    $mark['prof0'] = hrtime(true);
    $p = ProfilerFactory::create($setting, $period, $callGraph, $rate, $sample, $wallPeriod);
    $mark['prof1'] = hrtime(true);
    if ($p === null) {
        return null;
    }
    return new class ($p, $mark) implements Profiler {
        public function __construct(private readonly Profiler $inner, private array &$mark)
        {
        }

        public function name(): string
        {
            return $this->inner->name();
        }

        public function start(): void
        {
            $t = hrtime(true);
            $this->inner->start();
            $this->mark['profStart'] = hrtime(true) - $t;
        }

        public function fullRate(float $periodSec, float $lateSec = 0.0): void
        {
            $this->inner->fullRate($periodSec, $lateSec);
        }

        public function addWall(string $function, string $caller, float $seconds): void
        {
            $this->inner->addWall($function, $caller, $seconds);
        }

        public function stop(): array
        {
            $t = hrtime(true);
            $r = $this->inner->stop();
            $this->mark['profStop'] = hrtime(true) - $t;
            return $r;
        }
    };
};

// record: fromGlobals builds the UnixDatagramTransport itself in
// production; here it is built above, outside this phase (an object with
// two properties; it opens its socket at the first send).
$t = hrtime(true);
$runtime = Runtime::fromGlobals($config, $_SERVER, $transport, PHP_SAPI, $profilers, $timers);
Agent::setRuntime($runtime);
$ns['record'] = hrtime(true) - $t;

// install
$t = hrtime(true);
$runtime->install();
$ns['install'] = hrtime(true) - $t;

// start, profiler
$t = hrtime(true);
$runtime->start();
$t1 = hrtime(true);
if (isset($mark['timer0'], $sends[0])) {
    $ns['start_timer'] = $mark['timer1'] - $mark['timer0'];
    $ns['start_build'] = $sends[0][0] - $mark['timer1'];
    $ns['start_send'] = $sends[0][1] - $sends[0][0];
    $ns['start_other'] = $mark['timer0'] - $t;
}
$ns['start_total'] = (isset($mark['prof0']) ? $mark['prof0'] : $t1) - $t;
$ns['profiler_start'] = isset($mark['prof0']) ? $t1 - $mark['prof0'] : $t1 - ($sends[0][1] ?? $t1);
if (isset($mark['prof0'])) {
    $ns['profiler_create'] = $mark['prof1'] - $mark['prof0'];
    $ns['profiler_excimer_start'] = $mark['profStart'] ?? 0;
}

// app
$t = hrtime(true);
$db = bench_connect(\Bitville\Apm\Pdo\TracedPdo::class);
$t1 = hrtime(true);
bench_quote($db);
$ns['app_connect'] = $t1 - $t;
$ns['app'] = hrtime(true) - $t1;

// end
$runtime->beforeEnd(static function () use (&$mark): void {
    $mark['measured'] = hrtime(true);
});
$t = hrtime(true);
$runtime->finish(false);
$t1 = hrtime(true);
if (isset($mark['measured'], $sends[1])) {
    $ns['end_measure'] = $mark['measured'] - $t;
    $ns['end_profiler_stop'] = $mark['profStop'] ?? 0;
    $ns['end_build'] = $sends[1][0] - $mark['measured'];
    $ns['end_send'] = $t1 - $sends[1][0];
    $ns['end_send_socket'] = $sends[1][1] - $sends[1][0];
}
$ns['end_total'] = $t1 - $t;

// warm repeats
$t = hrtime(true);
$again = Config::load($_SERVER);
$ns['warm_config'] = hrtime(true) - $t;
$discard = new class () implements Transport {
    public function send(string $payload): bool
    {
        return true;
    }
};
$t = hrtime(true);
Runtime::fromGlobals($again, $_SERVER, $discard, PHP_SAPI, static fn (): ?Profiler => null, static fn (): ?ProgressTimer => null);
$ns['warm_record'] = hrtime(true) - $t;
$encoder = new Encoder();
foreach (['start' => 0, 'end' => 1] as $name => $i) {
    if (isset($payloads[$i])) {
        $m = json_decode($payloads[$i], true);
        $t = hrtime(true);
        $encoder->encode($m);
        $ns['warm_' . $name . '_encode'] = hrtime(true) - $t;
    }
}

bench_answer(200, [
    'agent' => true,
    'preloaded' => $preloaded,
    'drawn' => isset($mark['prof0']),
    'sent' => count($sends),
    'bytes' => array_map('strlen', $payloads),
    'ns' => $ns,
]);
