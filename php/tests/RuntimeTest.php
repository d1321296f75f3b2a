<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Agent;
use Bitville\Apm\Config;
use Bitville\Apm\Messages;
use Bitville\Apm\Profiler\Timer;
use Bitville\Apm\Runtime;
use Bitville\Apm\Tests\Support\FakeProfiler;
use Bitville\Apm\Tests\Support\MemoryTransport;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

final class RuntimeTest extends TestCase
{
    private MemoryTransport $transport;

    protected function setUp(): void
    {
        $this->transport = new MemoryTransport();
    }

    protected function tearDown(): void
    {
        Agent::setRuntime(null);
    }

    /**
     * @param array<string, string> $config
     * @param array<string, mixed> $server
     * @param int $status what the response status is at the end
     */
    private function runtime(array $config = [], array $server = [], string $sapi = 'fpm-fcgi', ?\Closure $profilers = null, ?\Closure $timers = null, int $status = 200): Runtime
    {
        $c = Config::fromValues($config + ['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off', 'host' => 'web-1', 'excimer_request_rate' => '1']);
        $server += ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/orders/42?x=1', 'REQUEST_TIME_FLOAT' => microtime(true)];
        return Runtime::fromGlobals($c, $server, $this->transport, $sapi, $profilers, $timers, static fn (): int => $status);
    }

    public function testStartAndEnd(): void
    {
        $rt = $this->runtime([], ['HTTP_X_CORRELATION_ID' => 'corr-1'], status: 404);
        $rt->start();
        $start = $this->transport->last('start');
        self::assertNotNull($start);
        self::assertSame('GET /orders/{id}', $start['endpoint']);
        self::assertSame('/orders/42', $start['uri']);
        self::assertSame('corr-1', $start['cid']);
        self::assertSame('fpm-fcgi', $start['sapi']);
        self::assertSame('web-1', $start['host']);
        self::assertArrayNotHasKey('pool', $start);
        self::assertSame(0, $start['dropped']);

        $rt->setRoute('/orders/{order}');
        $rt->sql('SELECT 1', 1500000, 1);
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertNotNull($end);
        self::assertSame($start['id'], $end['id']);
        self::assertSame('GET /orders/{order}', $end['endpoint']);
        self::assertSame(404, $end['status']);
        self::assertSame([['q' => 'SELECT 1', 'd' => 1500, 'rows' => 1]], $end['sql']);
        self::assertArrayNotHasKey('sites', $end, 'a fast request that did not fail leaves its call sites out');
        self::assertArrayNotHasKey('trace_id', $end);
        self::assertArrayNotHasKey('forced', $end);
        self::assertSame('none', $end['profiler']);
        self::assertIsInt($end['wall'], 'microseconds');
        self::assertGreaterThanOrEqual(0, $end['wall']);
        self::assertIsInt($end['ts']);
        self::assertGreaterThanOrEqual($end['started'], $end['ts']);
        self::assertEqualsWithDelta(microtime(true), $end['ts'] / 1e6, 60.0, 'ts in microseconds');
        self::assertGreaterThan(0, $end['mem_peak']);
        self::assertIsInt($end['cpu_user']);
        self::assertFalse($end['fatal']);
    }

    public function testCliEndpoint(): void
    {
        $rt = $this->runtime([], ['argv' => ['bin/cron/reindex.php', '--all']], 'cli', status: 0);
        $rt->start();
        $start = $this->transport->last('start');
        self::assertSame('CLI', $start['method']);
        self::assertSame('CLI bin/cron/reindex.php', $start['endpoint']);
        self::assertSame('bin/cron/reindex.php', $start['uri']);
        self::assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', $start['cid']);
        $rt->record->exit = 3;
        $rt->finish(false);
        self::assertSame(3, $this->transport->last('end')['exit']);
    }

    public function testEndpointRulesAndRedactedUri(): void
    {
        $rt = $this->runtime(['endpoint_rules' => '#^/shop/[^/]+$# => /shop/{slug}'], ['REQUEST_URI' => '/shop/red-shoes?password=x']);
        $rt->start();
        self::assertSame('GET /shop/{slug}', $this->transport->last('start')['endpoint']);
        $rt = $this->runtime([], ['REQUEST_URI' => '/cards/4111111111111111/charge']);
        $rt->start();
        $start = $this->transport->last('start');
        self::assertSame('/cards/[REDACTED]/charge', $start['uri']);
        self::assertSame('GET /cards/{id}/charge', $start['endpoint']);
    }

    public function testSqlCapAndDropped(): void
    {
        $rt = $this->runtime(['sql_max_statements' => '3']);
        for ($i = 0; $i < 5; $i++) {
            $rt->sql("SELECT $i", 1000);
        }
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame(['SELECT 0', 'SELECT 1', 'SELECT 2'], array_column($end['sql'], 'q'));
        self::assertSame(2, $end['sql_dropped']);
    }

    public function testSqlTextRedactedAndCut(): void
    {
        $rt = $this->runtime(['sql_max_length' => '64']);
        $rt->sql("UPDATE users SET password = 'hunter2' WHERE id = 1", 1000, 1);
        $rt->sql('SELECT ' . str_repeat('a, ', 100) . 'b FROM t', 1000, 0, true);
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame("UPDATE users SET password = '[REDACTED]' WHERE id = 1", $end['sql'][0]['q']);
        self::assertArrayNotHasKey('trunc', $end['sql'][0]);
        self::assertSame(64, strlen($end['sql'][1]['q']));
        self::assertTrue($end['sql'][1]['trunc']);
        self::assertTrue($end['sql'][1]['err']);
        self::assertSame(0, $end['sql'][1]['rows']);
        self::assertSame(['sql.q'], $end['truncated']);
    }

    public function testSqlCommenter(): void
    {
        $rt = $this->runtime();
        self::assertSame("SELECT 1 /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/", $rt->commentSql('SELECT 1'));
        $rt->setRoute('/orders/{order}');
        self::assertSame("SELECT 1 /*endpoint='GET%20%2Forders%2F%7Border%7D'*/", $rt->commentSql('SELECT 1'), 'follows the endpoint');
        $rt = $this->runtime(['sqlcommenter' => '0']);
        self::assertSame('SELECT 1', $rt->commentSql('SELECT 1'));
        $rt = $this->runtime(['sqlcommenter_correlation' => '1'], ['HTTP_X_CORRELATION_ID' => 'c-1']);
        self::assertSame("SELECT 1 /*correlation_id='c-1',endpoint='GET%20%2Forders%2F%7Bid%7D'*/", $rt->commentSql('SELECT 1'));
    }

    public function testErrorHandlerChainsAndCounts(): void
    {
        $rt = $this->runtime();
        $calls = [];
        $prev = set_error_handler(static function (int $no, string $msg, string $file, int $line) use (&$calls) {
            $calls[] = [$no, $msg];
            return $no === E_USER_NOTICE ? null : false;
        });
        try {
            $rt->install();
            // install() put the runtime's handler on top of ours
            $mine = set_error_handler(null);
            set_error_handler($mine);
            self::assertSame([$rt, 'onError'], $mine);

            self::assertFalse($rt->onError(E_WARNING, 'Undefined array key "x"', '/a.php', 3));
            self::assertNull($rt->onError(E_USER_NOTICE, 'note', '/a.php', 4), 'the previous handler\'s result is returned as is');
            $level = error_reporting(E_ALL & ~E_DEPRECATED);
            try {
                $rt->onError(E_DEPRECATED, 'old', '/a.php', 5);
            } finally {
                error_reporting($level);
            }
            self::assertCount(3, $calls, 'the previous handler sees every error');
        } finally {
            restore_error_handler();
            restore_error_handler();
            restore_exception_handler();
        }
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame([
            ['type' => 'E_WARNING', 'msg' => 'Undefined array key "x"', 'file' => '/a.php', 'line' => 3],
            ['type' => 'E_USER_NOTICE', 'msg' => 'note', 'file' => '/a.php', 'line' => 4],
        ], $end['errors'], 'errors outside error_reporting (and @-silenced ones) are not counted');
        self::assertSame(0, $end['errors_dropped']);
    }

    public function testErrorsCapped(): void
    {
        $rt = $this->runtime();
        for ($i = 0; $i < 70; $i++) {
            $rt->onError($i % 2 ? E_NOTICE : E_WARNING, "token=secret$i", '/a.php', $i);
        }
        self::assertSame(['E_WARNING' => 35, 'E_NOTICE' => 35], $rt->record->errorCounts());
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertCount(50, $end['errors']);
        self::assertSame(20, $end['errors_dropped']);
        self::assertSame('token=[REDACTED]', $end['errors'][0]['msg']);
    }

    public function testExceptionHandlerChainsOrRethrows(): void
    {
        $rt = $this->runtime(status: 500);
        $seen = null;
        set_exception_handler(static function (\Throwable $e) use (&$seen): void {
            $seen = $e;
        });
        try {
            $rt->install();
            $e = new \DomainException('no such order password=x');
            $rt->onException($e);
            self::assertSame($e, $seen);
        } finally {
            restore_exception_handler();
            restore_exception_handler();
            restore_error_handler();
        }

        $rt2 = $this->runtime();
        $e2 = new \LogicException('boom');
        try {
            $rt2->onException($e2);
            self::fail('rethrow expected');
        } catch (\LogicException $caught) {
            self::assertSame($e2, $caught, 'the very same exception, unchanged');
        }
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame('DomainException', $end['errors'][0]['type']);
        self::assertSame('no such order password=[REDACTED]', $end['errors'][0]['msg']);
    }

    public function testFatalAtShutdown(): void
    {
        $rt = $this->runtime();
        $rt->noteFatal(['type' => E_WARNING, 'message' => 'not fatal', 'file' => '/a.php', 'line' => 1]);
        self::assertFalse($rt->record->fatal);
        $rt->noteFatal(['type' => E_ERROR, 'message' => 'Maximum execution time of 30 seconds exceeded', 'file' => '/a.php', 'line' => 9]);
        self::assertTrue($rt->record->fatal);
        self::assertSame([['E_ERROR', 'Maximum execution time of 30 seconds exceeded', '/a.php', 9]], $rt->record->errors());
    }

    public function testUncaughtExceptionsAtShutdown(): void
    {
        $rt = $this->runtime();
        try {
            $rt->onException(new \RuntimeException('boom'));
        } catch (\RuntimeException) {
        }
        $rt->noteFatal(['type' => E_ERROR, 'message' => "Uncaught RuntimeException: boom in /a.php:3\nStack trace:\n#0 {main}\n  thrown", 'file' => '/a.php', 'line' => 3]);
        self::assertTrue($rt->record->fatal);
        self::assertCount(1, $rt->record->errors());

        // one another handler rethrew: named after its class
        $rt = $this->runtime();
        $rt->noteFatal(['type' => E_ERROR, 'message' => "Uncaught App\\Error\\NotFound: no order 7 in /a.php:3\nStack trace:\n#0 {main}\n  thrown", 'file' => '/a.php', 'line' => 3]);
        self::assertSame([['App\Error\NotFound', 'no order 7', '/a.php', 3]], $rt->record->errors());
        $rt = $this->runtime();
        $rt->noteFatal(['type' => E_ERROR, 'message' => "Uncaught Exception in /a.php:3\nStack trace:\n#0 {main}\n  thrown", 'file' => '/a.php', 'line' => 3]);
        self::assertSame([['Exception', '', '/a.php', 3]], $rt->record->errors());
    }

    public function testProfilerResultsInEnd(): void
    {
        $profile = [
            'fn' => [['n' => 'App\Pricing::recalculate', 'self' => 0.03, 'incl' => 0.04], ['n' => '{main}', 'self' => 0.001, 'incl' => 0.05]],
            'stacks' => [['s' => '{main};App\Pricing::recalculate', 'n' => 3]],
            'period' => 0.01,
        ];
        $fake = new FakeProfiler($profile);
        $args = null;
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_period_ms' => '5', 'slow_threshold_ms' => '0'], profilers: static function (string $setting, float $period, bool $callGraph) use ($fake, &$args) {
            $args = [$setting, $period, $callGraph];
            return $fake;
        }, timers: static fn (): ?Timer => null);
        $rt->start();
        self::assertSame(['excimer', 0.005, false], $args);
        self::assertSame(1, $fake->starts);
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame(1, $fake->stops);
        self::assertSame('excimer', $end['profiler']);
        self::assertSame(10000, $end['period'], 'microseconds');
        self::assertSame([['n' => 'App\Pricing::recalculate', 'self' => 30000, 'incl' => 40000], ['n' => '{main}', 'self' => 1000, 'incl' => 50000]], $end['fn']);
        self::assertSame($profile['stacks'], $end['stacks']);
    }

    public function testExcimerRunsOnTheDrawnShareOfRequests(): void
    {
        $calls = 0;
        $drawnArgs = [];
        $factory = static function (string $setting, float $period, bool $callGraph, float $rate, bool $sample) use (&$calls, &$drawnArgs): ?object {
            $calls++;
            $drawnArgs[] = [$period, $rate, $sample];
            return null;
        };
        $noTimer = static fn (): ?Timer => null;
        foreach (['0' => 0, '1' => 50] as $rate => $want) {
            $calls = 0;
            for ($i = 0; $i < 50; $i++) {
                $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => (string) $rate], profilers: $factory, timers: $noTimer)->start();
            }
            self::assertSame($want, $calls, "excimer_request_rate=$rate");
        }
        // Half the requests, drawn from the request's random bytes.
        $calls = 0;
        $drawnArgs = [];
        for ($i = 0; $i < 400; $i++) {
            $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => '0.5'], profilers: $factory, timers: $noTimer)->start();
        }
        self::assertGreaterThan(140, $calls);
        self::assertLessThan(260, $calls);
        self::assertSame([0.1, 0.5, true], $drawnArgs[0], 'the configured period, the rate, and "sample this one"');
        // A request forced to a call graph gets its profiler even when not
        // drawn, told not to sample.
        $calls = 0;
        $drawnArgs = [];
        $this->runtime(['profiler' => 'tideways', 'excimer_request_rate' => '0', 'force_header_secret' => 's3cret'], ['HTTP_X_BITVILLE_PROFILE' => 's3cret'], profilers: $factory, timers: $noTimer)
            ->start();
        self::assertSame([[0.1, 0.0, false]], $drawnArgs);
    }

    public function testWallTimeInTheEnd(): void
    {
        $profile = [
            'fn' => [['n' => 'App\Cart::show', 'self' => 0.01, 'incl' => 0.02]],
            'stacks' => [['s' => '{main};App\Cart::show', 'n' => 1]],
            'period' => 0.1,
            'wall' => [['n' => 'session_start', 'c' => 'App\Cart::show', 's' => 2.0], ['n' => "bad\x01name", 'c' => '', 's' => 1.0], ['n' => '', 'c' => 'x', 's' => 1.0]],
        ];
        $args = null;
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_wall_period_ms' => '500'], profilers: static function (string $setting, float $period, bool $callGraph, float $rate, bool $sample, float $wallPeriod) use ($profile, &$args): FakeProfiler {
            $args = [$period, $rate, $sample, $wallPeriod];
            return new FakeProfiler($profile);
        }, timers: static fn (): ?Timer => null);
        $rt->start();
        self::assertSame([0.1, 1.0, true, 0.5], $args, 'the real-clock period is handed to the profiler');
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame([['n' => 'session_start', 'c' => 'App\Cart::show', 's' => 2000000], ['n' => 'bad?name', 'c' => '', 's' => 1000000]], $end[Messages::WALL_KEY]);
        self::assertIsInt($end['wall'], 'the request\'s wall time stays what it was');

        unset($profile['wall']);
        $rt = $this->runtime(['profiler' => 'excimer'], profilers: static fn (): FakeProfiler => new FakeProfiler($profile), timers: static fn (): ?Timer => null);
        $rt->start();
        $rt->finish(false);
        self::assertArrayNotHasKey(Messages::WALL_KEY, $this->transport->last('end'), 'no wall samples, no list');
    }

    /**
     * The long-request mark is one more deadline of the one timer: the
     * first tick comes at the earliest deadline, and each tick re-arms the
     * timer for the next one when its period would miss it.
     */
    public function testLongRequestsAreProfiledAtTheFullRate(): void
    {
        $timer = new class () implements Timer {
            /** @var list<array{float, float}> */
            public array $restarts = [];

            public function stop(): void
            {
            }

            public function restart(float $afterSec, float $intervalSec): void
            {
                $this->restarts[] = [$afterSec, $intervalSec];
            }
        };
        $calls = [];
        $fake = new FakeProfiler(['fn' => [], 'stacks' => [], 'period' => 0.1]);
        $factory = static function (string $setting, float $period, bool $callGraph, float $rate, bool $sample, float $wallPeriod) use (&$calls, $fake): FakeProfiler {
            $calls[] = [$period, $rate, $sample, $wallPeriod];
            return $fake;
        };
        $args = [];
        $tick = null;
        $timers = static function (float $after, float $interval, callable $cb) use ($timer, &$args, &$tick): Timer {
            $args[] = [$after, $interval];
            $tick = $cb;
            return $timer;
        };

        // Not drawn: nothing at start, the profiler comes at the mark.
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => '0', 'profile_long_ms' => '20', 'progress_after_ms' => '5000'], profilers: $factory, timers: $timers);
        $rt->start();
        self::assertSame([[0.02, 5.0]], $args, 'one timer, first at the mark');
        self::assertSame([], $calls, 'no profiler for a request not drawn');
        usleep(25000);
        $tick(['{main}', 'f']);
        self::assertSame([[0.1, 1.0, true, 0.1]], $calls, 'full rate on both clocks: excimer_period_ms');
        self::assertSame(1, $fake->starts);
        self::assertCount(1, $timer->restarts, 're-armed for the first progress (its period would tick at 5.02 s)');
        self::assertLessThan(5.0, $timer->restarts[0][0]);
        self::assertGreaterThan(0.0, $timer->restarts[0][0]);
        self::assertSame(5.0, $timer->restarts[0][1]);
        self::assertSame(['start'], array_column($this->transport->messages(), 'type'), 'the mark is no progress');
        $rt->finish(false);
        self::assertSame('excimer', $this->transport->last('end')['profiler']);

        // Drawn: the running profiler goes to the full rate.
        $args = $calls = [];
        $fake->fullRates = [];
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => '1', 'profile_long_ms' => '1', 'progress_after_ms' => '0'], profilers: $factory, timers: $timers);
        $rt->start();
        self::assertSame([[0.001, 86400.0]], $args, 'progress off: the timer is there for the mark');
        self::assertCount(1, $calls);
        usleep(2000);
        $tick(['{main}']);
        self::assertSame([0.1], $fake->fullRates);
        self::assertSame([0.0], $fake->lates, 'on time');
        self::assertCount(1, $calls, 'no second profiler');
        $rt->finish(false);

        // Blocked in one call across the mark: the tick comes when it
        // returns, late. Drawn: the profiler is told how late; not drawn:
        // the new profiler gets the time since the mark, on the call.
        $site = ['file' => '/app/Partner.php', 'line' => 12, 'function' => 'quote', 'class' => 'App\\Partner'];
        $fake->fullRates = $fake->lates = [];
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => '1', 'profile_long_ms' => '1', 'progress_after_ms' => '0'], profilers: $factory, timers: $timers);
        $rt->start();
        usleep(150000);
        $tick(['{main}', 'App\\Partner::quote'], $site);
        self::assertGreaterThanOrEqual(0.148, $fake->lates[0]);
        self::assertSame([], $fake->walls);
        $rt->finish(false);
        $calls = [];
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => '0', 'profile_long_ms' => '1', 'progress_after_ms' => '0'], profilers: $factory, timers: $timers);
        $rt->start();
        usleep(150000);
        $tick(['{main}', 'App\\Partner::quote'], $site);
        self::assertCount(1, $calls, 'the profiler came at the mark');
        self::assertCount(1, $fake->walls);
        [$n, $c, $s] = $fake->walls[0];
        self::assertSame(['App\\Partner::quote', '{main}'], [$n, $c], 'no source to name the call from: the user function');
        self::assertGreaterThanOrEqual(0.148, $s);
        $rt->finish(false);
        // Late by less than a period: nothing added.
        $fake->walls = [];
        $rt = $this->runtime(['profiler' => 'excimer', 'excimer_request_rate' => '0', 'profile_long_ms' => '1', 'progress_after_ms' => '0'], profilers: $factory, timers: $timers);
        $rt->start();
        usleep(3000);
        $tick(['{main}', 'App\\Partner::quote'], $site);
        self::assertSame([], $fake->walls);
        $rt->finish(false);

        // Off: no timer at all without progress.
        $args = [];
        $rt = $this->runtime(['profiler' => 'excimer', 'profile_long_ms' => '0', 'progress_after_ms' => '0'], profilers: $factory, timers: $timers);
        $rt->start();
        self::assertSame([], $args);
        // profiler off: no mark either
        $rt = $this->runtime(['profiler' => 'off', 'progress_after_ms' => '0'], profilers: $factory, timers: $timers);
        $rt->start();
        self::assertSame([], $args);
    }

    public function testStacksOnlyForSlowRequests(): void
    {
        $profile = ['fn' => [['n' => 'f', 'self' => 0.001, 'incl' => 0.001]], 'stacks' => [['s' => '{main};f', 'n' => 1]], 'period' => 0.001];
        $rt = $this->runtime(['profiler' => 'excimer', 'slow_threshold_ms' => '60000'], profilers: static fn (): FakeProfiler => new FakeProfiler($profile), timers: static fn (): ?Timer => null);
        $rt->start();
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertArrayHasKey('fn', $end);
        self::assertArrayNotHasKey('stacks', $end);
    }

    public function testBrokenProfilerStillEnds(): void
    {
        $rt = $this->runtime(['profiler' => 'excimer'], profilers: static fn (): FakeProfiler => new FakeProfiler([], 'excimer', true), timers: static fn (): ?Timer => null);
        $rt->start();
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertSame('none', $end['profiler']);
        self::assertArrayNotHasKey('fn', $end);

        $rt = $this->runtime(['profiler' => 'excimer'], profilers: static function (): never {
            throw new \RuntimeException('factory broke');
        }, timers: static fn (): ?Timer => null);
        $rt->start();
        self::assertNotNull($this->transport->last('start'), 'start is sent anyway');
    }

    public function testOffMeansNoProfiler(): void
    {
        $called = false;
        $rt = $this->runtime(['profiler' => 'off'], profilers: static function () use (&$called) {
            $called = true;
            return null;
        }, timers: static fn (): ?Timer => null);
        $rt->start();
        self::assertFalse($called);
    }

    /** @return array<string, array{array<string, string>, array<string, string>, bool}> */
    public static function callGraphs(): array
    {
        return [
            'default' => [[], [], false],
            'always sampled' => [['sample_rate' => '1'], [], true],
            'never sampled' => [['sample_rate' => '0'], [], false],
            'forced' => [['force_header_secret' => 's3cret'], ['HTTP_X_BITVILLE_PROFILE' => 's3cret'], true],
            'wrong secret' => [['force_header_secret' => 's3cret'], ['HTTP_X_BITVILLE_PROFILE' => 'guess'], false],
            'no secret configured' => [[], ['HTTP_X_BITVILLE_PROFILE' => ''], false],
        ];
    }

    /**
     * @dataProvider callGraphs
     * @param array<string, string> $config
     * @param array<string, string> $server
     */
    public function testCallGraphDecision(array $config, array $server, bool $want): void
    {
        $got = null;
        $rt = $this->runtime($config + ['profiler' => 'tideways'], $server, profilers: static function (string $s, float $p, bool $callGraph) use (&$got) {
            $got = $callGraph;
            return null;
        }, timers: static fn (): ?Timer => null);
        $rt->start();
        self::assertSame($want, $got);
    }

    public function testSampleRateSamplesAboutThatShare(): void
    {
        $sampled = 0;
        for ($i = 0; $i < 2000; $i++) {
            $rt = $this->runtime(['profiler' => 'tideways', 'sample_rate' => '0.1'], profilers: static function (string $s, float $p, bool $callGraph) use (&$sampled) {
                $sampled += $callGraph ? 1 : 0;
                return null;
            }, timers: static fn (): ?Timer => null);
            $rt->start();
        }
        // 2000 draws at p=0.1: mean 200, sd ~13.4; 120..280 is six sd either side
        self::assertGreaterThan(120, $sampled);
        self::assertLessThan(280, $sampled);
    }

    public function testProgress(): void
    {
        $timerArgs = null;
        $tick = null;
        $rt = $this->runtime(['progress_after_ms' => '2000', 'progress_interval_ms' => '1000'], profilers: static fn (): ?object => null, timers: static function (float $after, float $interval, callable $cb) use (&$timerArgs, &$tick) {
            $timerArgs = [$after, $interval];
            $tick = $cb;
            return null;
        });
        $rt->start();
        self::assertSame([2.0, 1.0], $timerArgs);
        $rt->setRoute('/orders/{id}');
        $tick(['{main}', 'App\Pricing::recalculate']);
        $tick(['{main}', 'App\Pricing::recalculate', 'PDOStatement::execute']);
        $progress = array_values(array_filter($this->transport->messages(), static fn (array $m): bool => $m['type'] === 'progress'));
        self::assertCount(2, $progress);
        self::assertSame([1, 2], array_column($progress, 'seq'));
        self::assertSame('GET /orders/{id}', $progress[0]['endpoint']);
        self::assertSame(['{main}', 'App\Pricing::recalculate', 'PDOStatement::execute'], $progress[1]['stack']);
        self::assertGreaterThan(0, $progress[0]['mem']);
        self::assertGreaterThanOrEqual(0.0, $progress[0]['cpu']);
        self::assertGreaterThanOrEqual(0.0, $progress[0]['elapsed']);
        self::assertSame(['v', 'type', 'id', 'pid', 'project', 'ts', 'endpoint', 'elapsed', 'seq', 'mem', 'cpu', 'stack'], array_keys($progress[0]));

        $rt->finish(false);
        $tick(['{main}']);
        self::assertSame(['start', 'progress', 'progress', 'end'], array_column($this->transport->messages(), 'type'), 'no progress after the end');
    }

    public function testDelayedStart(): void
    {
        $timer = new class () implements Timer {
            public int $stops = 0;
            /** @var list<array{float, float}> */
            public array $restarts = [];

            public function stop(): void
            {
                $this->stops++;
            }

            public function restart(float $afterSec, float $intervalSec): void
            {
                $this->restarts[] = [$afterSec, $intervalSec];
            }
        };
        $args = null;
        $tick = null;
        $rt = $this->runtime(['start_delay_ms' => '100', 'progress_after_ms' => '1', 'progress_interval_ms' => '5000'], profilers: static fn (): ?object => null, timers: static function (float $after, float $interval, callable $cb) use ($timer, &$args, &$tick) {
            $args = [$after, $interval];
            $tick = $cb;
            return $timer;
        });
        $rt->start();
        self::assertSame([0.1, 5.0], $args, 'one timer: first tick at the delay, then every interval');
        self::assertSame([], $this->transport->messages(), 'no start before the delay');
        usleep(2000);
        $tick(['{main}', 'f']);
        self::assertSame(['start', 'progress'], array_column($this->transport->messages(), 'type'), 'the first tick sends the start, and progress once progress_after_ms passed');
        $tick(['{main}', 'g']);
        $rt->finish(false);
        self::assertSame(['start', 'progress', 'progress', 'end'], array_column($this->transport->messages(), 'type'));
        self::assertSame(1, $timer->stops);
    }

    public function testDelayedStartOfAShortRequestIsNeverSent(): void
    {
        $timer = new class () implements Timer {
            public function stop(): void
            {
            }

            public function restart(float $afterSec, float $intervalSec): void
            {
            }
        };
        $args = null;
        $rt = $this->runtime(['start_delay_ms' => '100', 'progress_after_ms' => '0'], profilers: static fn (): ?object => null, timers: static function (float $after, float $interval) use ($timer, &$args) {
            $args = [$after, $interval];
            return $timer;
        });
        $rt->start();
        self::assertSame([0.1, 86400.0], $args, 'progress off: a single tick');
        $rt->finish(false);
        self::assertSame(['end'], array_column($this->transport->messages(), 'type'));
    }

    public function testDelayedStartWithoutTimersSendsAtOnce(): void
    {
        $rt = $this->runtime(['start_delay_ms' => '100'], profilers: static fn (): ?object => null, timers: static fn (): ?Timer => null);
        $rt->start();
        self::assertSame(['start'], array_column($this->transport->messages(), 'type'));
    }

    public function testProgressOff(): void
    {
        $called = false;
        $rt = $this->runtime(['progress_after_ms' => '0'], profilers: static fn (): ?object => null, timers: static function () use (&$called) {
            $called = true;
            return null;
        });
        $rt->start();
        self::assertFalse($called);
    }

    /** @return array<string, array{?string, bool, string, bool}> spool_dir, make the derived dir, where the end should be, whether that dir exists after */
    public static function spoolDirs(): array
    {
        return [
            'derived, exists' => [null, true, 'agent.spool', true],
            'derived, absent: nothing written' => [null, false, 'agent.spool', false],
            'off' => ['off', true, 'agent.spool', true],
            'explicit, created' => ['{dir}/mine/spool', false, 'mine/spool', true],
        ];
    }

    /**
     * An end the daemon does not take goes to the spool: the one derived
     * from the socket when the daemon made it, or an explicit one.
     *
     * @dataProvider spoolDirs
     */
    public function testEndSpooledWhenTheDaemonDoesNotTakeIt(?string $spoolDir, bool $makeDerived, string $where, bool $exists): void
    {
        $dir = TempDir::create();
        try {
            if ($makeDerived) {
                mkdir($dir . '/agent.spool');
            }
            $config = ['socket' => $dir . '/agent.sock'];
            if ($spoolDir !== null) {
                $config['spool_dir'] = str_replace('{dir}', $dir, $spoolDir);
            }
            $this->transport->refuse = true;
            $rt = $this->runtime($config);
            $rt->start();
            $rt->finish(false);
            $spooled = $spoolDir === 'off' || (!$makeDerived && $spoolDir === null) ? 0 : 1;
            self::assertSame($exists, is_dir($dir . '/' . $where));
            $files = glob($dir . '/' . $where . '/*.json') ?: [];
            self::assertCount($spooled, $files);
            if ($spooled === 1) {
                $end = json_decode((string) file_get_contents($files[0]), true);
                self::assertSame('end', $end['type']);
                self::assertSame(1, $end['dropped'], 'with the start that was dropped');
            }
            $entries = array_merge(['.', '..'], $makeDerived ? ['agent.spool'] : [], str_starts_with($where, 'mine') ? ['mine'] : []);
            self::assertSame($entries, scandir($dir), 'nothing else was written');
        } finally {
            TempDir::remove($dir);
        }
    }

    public function testFinishOnce(): void
    {
        $rt = $this->runtime();
        $rt->finish(false);
        $rt->finish(false);
        $ends = array_filter($this->transport->messages(), static fn (array $m): bool => $m['type'] === 'end');
        self::assertCount(1, $ends);
        self::assertTrue($rt->isFinished());
    }
}
