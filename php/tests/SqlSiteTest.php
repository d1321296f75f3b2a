<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Config;
use Bitville\Apm\ConfigException;
use Bitville\Apm\Messages;
use Bitville\Apm\Redactor;
use Bitville\Apm\RequestRecord;
use Bitville\Apm\Runtime;
use Bitville\Apm\SqlSite;
use Bitville\Apm\Tests\Support\FakeProfiler;
use Bitville\Apm\Tests\Support\MemoryTransport;
use Bitville\Apm\Profiler\Timer;
use PHPUnit\Framework\TestCase;

/** Call sites of statements (SqlSite, the record's table) and the request's trace id and forced mark. */
final class SqlSiteTest extends TestCase
{
    /** A backtrace as debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS) gives it, innermost first. */
    private static function trace(): array
    {
        $src = dirname(__DIR__) . '/src';
        return [
            ['file' => "$src/Runtime.php", 'line' => 500, 'function' => 'capture', 'class' => 'Bitville\Apm\SqlSite', 'type' => '::'],
            ['file' => "$src/Pdo/TracedStatement.php", 'line' => 40, 'function' => 'sql', 'class' => 'Bitville\Apm\Runtime', 'type' => '->'],
            ['file' => '/srv/shop/vendor/acme/db/src/Gateway.php', 'line' => 12, 'function' => 'execute', 'class' => 'Bitville\Apm\Pdo\TracedStatement', 'type' => '->'],
            // a C extension calling back: no file
            ['function' => 'run', 'class' => 'Acme\Db\Gateway', 'type' => '->'],
            ['file' => '/srv/shop/app/Models/Order.php', 'line' => 41, 'function' => 'call_user_func'],
            ['file' => '/srv/shop/app/Controllers/OrdersController.php', 'line' => 27, 'function' => 'findWithItems', 'class' => 'App\Models\Order', 'type' => '::'],
            ['file' => '/srv/shop/app/bootstrap.php', 'line' => 9, 'function' => 'showAction', 'class' => 'App\Controllers\OrdersController', 'type' => '->'],
            ['file' => '/srv/shop/public/index.php', 'line' => 3, 'function' => 'require_once'],
        ];
    }

    public function testFramesAreTheApplicationsInnermostFirst(): void
    {
        self::assertSame([
            '/srv/shop/app/Models/Order.php:41 App\Models\Order::findWithItems',
            '/srv/shop/app/Controllers/OrdersController.php:27 App\Controllers\OrdersController::showAction',
            '/srv/shop/app/bootstrap.php:9 {main}',
            '/srv/shop/public/index.php:3 {main}',
        ], SqlSite::frames(self::trace(), 5));
        self::assertSame(['/srv/shop/app/Models/Order.php:41 App\Models\Order::findWithItems'], SqlSite::frames(self::trace(), 1));
        self::assertSame([], SqlSite::frames(self::trace(), 0));
        self::assertSame([], SqlSite::frames(array_slice(self::trace(), 0, 4), 5), 'no application frame');
    }

    public function testAFrameWhoseFunctionIsCutOffIsLeftOut(): void
    {
        $trace = array_slice(self::trace(), 0, 6);
        self::assertSame([
            '/srv/shop/app/Models/Order.php:41 App\Models\Order::findWithItems',
        ], SqlSite::frames($trace, 5, false), 'the trace stops at the limit: the last place is in an unknown function');
        self::assertSame([
            '/srv/shop/app/Models/Order.php:41 App\Models\Order::findWithItems',
            '/srv/shop/app/Controllers/OrdersController.php:27 {main}',
        ], SqlSite::frames($trace, 5, true));
    }

    /** A trait's line is in each class that uses it: places are told apart by class. */
    public function testOnePlaceInTwoClasses(): void
    {
        $trace = static fn (string $class): array => [
            ['file' => '/srv/shop/app/Traits/Finds.php', 'line' => 7, 'function' => 'query', 'class' => 'Db', 'type' => '->'],
            ['file' => '/srv/shop/app/index.php', 'line' => 3, 'function' => 'find', 'class' => $class, 'type' => '::'],
        ];
        self::assertSame(['/srv/shop/app/Traits/Finds.php:7 App\Order::find'], SqlSite::frames($trace('App\Order'), 1));
        self::assertSame(['/srv/shop/app/Traits/Finds.php:7 App\Item::find'], SqlSite::frames($trace('App\Item'), 1));
        self::assertSame(['/srv/shop/app/Traits/Finds.php:7 App\Order::find'], SqlSite::frames($trace('App\Order'), 1));
    }

    public function testSiteSkipsTheAgentAndNamesTheCaller(): void
    {
        foreach (['0', '60000'] as $threshold) {
            $t = new MemoryTransport();
            $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off', 'sql_site_frames' => '2', 'slow_threshold_ms' => $threshold]);
            $rt = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'], $t, 'fpm-fcgi', status: static fn (): int => $threshold === '0' ? 200 : 500);
            $rt->start();
            $site = $rt->site();
            $line = __LINE__ - 1;
            $rt->sql('SELECT 1', 1000, 1, false, $site);
            $rt->finish(false);
            $end = $t->last('end');
            self::assertSame(0, $end['sql'][0]['site'] ?? null, "slow_threshold_ms=$threshold");
            self::assertSame(__FILE__ . ":$line " . __METHOD__, $end['sites'][0][0], "slow_threshold_ms=$threshold");
            self::assertCount(2, $end['sites'][0]);
        }
    }

    /** @return array<string, array{0: array<string, string>, 1: int, 2: string, 3: bool}> config, status, what happens, whether the end carries sites and stacks */
    public static function requests(): array
    {
        return [
            'fast, by default' => [[], 200, '', false],
            'client error' => [[], 404, '', false],
            'server error' => [[], 503, '', true],
            'forced' => [['force_header_secret' => 's3cret'], 200, 'forced', true],
            'uncaught exception' => [[], 200, 'exception', true],
            'fatal error' => [[], 200, 'fatal', true],
            'CLI exit status 2' => [[], 0, 'exit 2', true],
            'CLI exit status 0' => [[], 0, 'exit 0', false],
            'as slow as slow_threshold_ms' => [['slow_threshold_ms' => '1'], 200, 'slow', true],
            'slow_threshold_ms 0' => [['slow_threshold_ms' => '0'], 200, '', true],
        ];
    }

    /**
     * Call sites and stacks serve the raw traces of slow, failed and forced
     * requests; other requests leave them out, and their statements' sites
     * are never formatted.
     *
     * @param array<string, string> $config
     * @dataProvider requests
     */
    public function testSitesAndStacksOnlyForRequestsWorthALook(array $config, int $status, string $what, bool $detail): void
    {
        $t = new MemoryTransport();
        $c = Config::fromValues($config + ['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'excimer', 'excimer_request_rate' => '1']);
        $profile = ['fn' => [['n' => '{main}', 'self' => 0.001, 'incl' => 0.001]], 'stacks' => [['s' => '{main}', 'n' => 1]], 'period' => 0.1];
        $server = ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'] + ($what === 'forced' ? ['HTTP_X_BITVILLE_PROFILE' => 's3cret'] : []);
        $rt = Runtime::fromGlobals($c, $server, $t, $status === 0 ? 'cli' : 'fpm-fcgi', static fn (): FakeProfiler => new FakeProfiler($profile), static fn (): ?Timer => null, static fn (): int => $status);
        $rt->start();
        $rt->sql('SELECT 1', 1000, 1);
        $line = __LINE__ - 1;
        $rt->sql('SELECT 2', 1000, 1);
        match ($what) {
            'exception' => (static function () use ($rt): void {
                try {
                    $rt->onException(new \RuntimeException('boom'));
                } catch (\RuntimeException) {
                }
            })(),
            'fatal' => $rt->noteFatal(['type' => \E_ERROR, 'message' => 'Allowed time exceeded', 'file' => '/srv/a.php', 'line' => 3]),
            'exit 2' => $rt->record->exit = 2,
            'exit 0' => $rt->record->exit = 0,
            'slow' => \usleep(5000),
            default => null,
        };
        $rt->finish(false);
        $end = $t->last('end');
        self::assertNotNull($end);
        self::assertSame([['{main}', 1]], array_map(static fn (array $f): array => [$f['n'], 1], $end['fn']), 'fn is always sent: metrics need it');
        if (!$detail) {
            self::assertArrayNotHasKey('sites', $end);
            self::assertArrayNotHasKey('stacks', $end);
            self::assertSame([['q' => 'SELECT 1', 'd' => 1, 'rows' => 1], ['q' => 'SELECT 2', 'd' => 1, 'rows' => 1]], $end['sql']);
            return;
        }
        self::assertSame([['s' => '{main}', 'n' => 1]], $end['stacks']);
        self::assertSame([0, 1], array_column($end['sql'], 'site'));
        self::assertSame(__FILE__ . ":$line " . __METHOD__, $end['sites'][0][0], 'the call site starts at the caller of Runtime::sql()');
        self::assertSame(__FILE__ . ':' . ($line + 2) . ' ' . __METHOD__, $end['sites'][1][0]);
    }

    /**
     * A record that defers sites holds MAX_DEFERRED_SITES backtraces and
     * formats further ones at once; each statement keeps its own site
     * either way, and a request without detail sends none of them.
     */
    public function testHeldBacktracesAndTheOnesPastTheLimit(): void
    {
        $r = new RequestRecord('r', 1, 'p', 'c', 'GET', '/', 'GET /', 1764294512.0, deferSites: true);
        $n = RequestRecord::MAX_DEFERRED_SITES + 5;
        $refs = [];
        for ($i = 0; $i < $n; $i++) {
            $trace = [
                ['file' => "/srv/shop/app/M$i.php", 'line' => $i + 1, 'function' => 'query', 'class' => 'Db', 'type' => '->'],
                ['file' => '/srv/shop/public/index.php', 'line' => 3, 'function' => 'find', 'class' => "App\\M$i", 'type' => '::'],
            ];
            $refs[] = $ref = $r->addTrace($trace, true, 2);
            $r->addSql("SELECT $i", 0.001, 1, false, $ref);
            $r->addSql("SELECT $i -- again", 0.001, 1, false, $ref);
        }
        self::assertSame(range(-2, -1 - RequestRecord::MAX_DEFERRED_SITES), array_slice($refs, 0, RequestRecord::MAX_DEFERRED_SITES), 'held');
        self::assertSame(range(0, 4), array_slice($refs, RequestRecord::MAX_DEFERRED_SITES), 'formatted at once');

        $quiet = (new Messages(new Redactor(), 2048, 60000))->end($r, 1764294513.0, 0, 0.01, 0.0, 0.0, 0, 200, null, 'none');
        self::assertArrayNotHasKey('sites', $quiet);
        self::assertSame([], array_filter($quiet['sql'], static fn (array $s): bool => isset($s['site'])), 'no statement refers to a site not sent');

        $m = (new Messages(new Redactor(), 2048, 60000))->end($r, 1764294513.0, 0, 0.01, 0.0, 0.0, 0, 500, null, 'none');
        self::assertCount($n, $m['sites']);
        foreach ($m['sql'] as $j => $s) {
            $i = intdiv($j, 2);
            self::assertSame(["/srv/shop/app/M$i.php:" . ($i + 1) . " App\\M$i::find", '/srv/shop/public/index.php:3 {main}'], $m['sites'][$s['site']], "statement $j");
        }
    }

    public function testTheRecordListsEachSiteOnceUpToTheLimit(): void
    {
        $r = new RequestRecord('r', 1, 'p', 'c', 'GET', '/', 'GET /', 1764294512.0);
        self::assertSame(0, $r->addSite(['a.php:1 f', 'b.php:2 {main}']));
        self::assertSame(1, $r->addSite(['a.php:1 f']));
        self::assertSame(0, $r->addSite(['a.php:1 f', 'b.php:2 {main}']));
        self::assertSame(-1, $r->addSite([]));
        for ($i = 2; $i < Messages::MAX_SITES; $i++) {
            self::assertSame($i, $r->addSite(["c.php:$i g"]));
        }
        self::assertSame(-1, $r->addSite(['d.php:1 h']), 'past the limit a site is not listed');
        self::assertSame(1, $r->addSite(['a.php:1 f']), 'known sites still are');
        self::assertCount(Messages::MAX_SITES, $r->sites());
    }

    public function testTheEndMessageHoldsSitesToTheProtocolsLimits(): void
    {
        $r = new RequestRecord('r', 1, 'p', 'c', 'GET', '/', 'GET /', 1764294512.0);
        $long = str_repeat('x', Messages::MAX_SITE_FRAME + 100) . ".php:1 f\x01";
        $r->addSql('SELECT 1', 0.001, 1, false, $r->addSite(array_merge([$long], array_fill(0, 9, 'a.php:1 f'))));
        $r->addSql('SELECT 2', 0.001);
        $m = (new Messages(new Redactor()))->end($r, 1764294513.0, 0, 0.1, 0.0, 0.0, 0, 200, null, 'none');
        self::assertSame([['q' => 'SELECT 1', 'd' => 1000, 'rows' => 1, 'site' => 0], ['q' => 'SELECT 2', 'd' => 1000]], $m['sql']);
        self::assertCount(Messages::MAX_SITE_FRAMES, $m['sites'][0]);
        self::assertSame(Messages::MAX_SITE_FRAME, strlen($m['sites'][0][0]));
    }

    /** @param array<string, string> $config @param array<string, mixed> $server */
    private static function end(array $config, array $server, string $sapi = 'fpm-fcgi'): array
    {
        $t = new MemoryTransport();
        $c = Config::fromValues($config + ['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off']);
        $rt = Runtime::fromGlobals($c, $server + ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'], $t, $sapi, status: static fn (): int => 200);
        $rt->start();
        $rt->sql('SELECT 1', 1000);
        $rt->finish(false);
        return [$t->last('start'), $t->last('end')];
    }

    public function testSitesOffWithZeroFrames(): void
    {
        [, $end] = self::end(['sql_site_frames' => '0'], []);
        self::assertSame([['q' => 'SELECT 1', 'd' => 1]], $end['sql']);
        self::assertArrayNotHasKey('sites', $end);
        [, $end] = self::end(['slow_threshold_ms' => '0'], []);
        self::assertCount(Config::DEFAULT_SQL_SITE_FRAMES, $end['sites'][0], 'the default, with PHPUnit\'s frames deep enough');
        $this->expectException(ConfigException::class);
        Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/s', 'sql_site_frames' => (string) (Messages::MAX_SITE_FRAMES + 1)]);
    }

    public function testTraceIdFromAValidTraceparentOnly(): void
    {
        $tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        [$start, $end] = self::end([], ['HTTP_TRACEPARENT' => $tp, 'HTTP_X_CORRELATION_ID' => 'order-77']);
        self::assertSame('4bf92f3577b34da6a3ce929d0e0e4736', $start['trace_id']);
        self::assertSame('4bf92f3577b34da6a3ce929d0e0e4736', $end['trace_id']);
        self::assertSame('order-77', $end['cid'], 'the correlation id stays X-Correlation-ID');
        foreach (['', '00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'] as $bad) {
            [$start, $end] = self::end([], ['HTTP_TRACEPARENT' => $bad]);
            self::assertArrayNotHasKey('trace_id', $start, $bad);
            self::assertArrayNotHasKey('trace_id', $end, $bad);
        }
    }

    public function testForcedOnlyWithTheProfileHeader(): void
    {
        $config = ['force_header_secret' => 's3cret'];
        [$start, $end] = self::end($config, ['HTTP_X_BITVILLE_PROFILE' => 's3cret']);
        self::assertTrue($end['forced']);
        self::assertArrayNotHasKey('forced', $start);
        [, $end] = self::end($config, ['HTTP_X_BITVILLE_PROFILE' => 'guess']);
        self::assertArrayNotHasKey('forced', $end);
        [, $end] = self::end($config, []);
        self::assertArrayNotHasKey('forced', $end);
        [, $end] = self::end([], ['HTTP_X_BITVILLE_PROFILE' => '']);
        self::assertArrayNotHasKey('forced', $end, 'no secret configured: nothing is forced');
    }
}
