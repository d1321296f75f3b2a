<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Agent;
use Bitville\Apm\Config;
use Bitville\Apm\Profiler\Timer;
use Bitville\Apm\Runtime;
use Bitville\Apm\Tests\Support\MemoryTransport;
use Bitville\Apm\Tests\Support\RecordingTransport;
use Bitville\Apm\Transport\UnixDatagramTransport;
use PHPUnit\Framework\TestCase;

/**
 * Whatever goes wrong inside the agent, the application sees no output, no
 * exception and no warning.
 */
final class SafetyTest extends TestCase
{
    protected function tearDown(): void
    {
        Agent::setRuntime(null);
    }

    /**
     * Runs $f with output buffering and an error handler that collects
     * everything, and asserts nothing reached either.
     */
    private static function assertInvisible(callable $f): void
    {
        $raised = [];
        set_error_handler(static function (int $no, string $msg) use (&$raised): bool {
            $raised[] = $msg;
            return true;
        });
        error_clear_last();
        ob_start();
        try {
            $f();
        } finally {
            $out = ob_get_clean();
            restore_error_handler();
        }
        self::assertSame('', $out, 'output');
        self::assertSame([], $raised, 'PHP errors');
        self::assertNull(error_get_last());
    }

    public function testDisabledAgentApi(): void
    {
        self::assertInvisible(static function (): void {
            Agent::setRuntime(null);
            self::assertNull(Agent::correlationId());
            self::assertNull(Agent::requestId());
            self::assertNull(Agent::endpoint());
            Agent::setEndpoint('/x');
            Agent::recordSql('SELECT 1', 0.1);
            Agent::startSql('SELECT 1')->stop(1);
            Agent::setExitCode(1);
            self::assertSame('SELECT 1', Agent::sqlComment('SELECT 1'));
        });
    }

    public function testAgentApi(): void
    {
        $t = new MemoryTransport();
        $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off']);
        $rt = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/a/1', 'HTTP_X_CORRELATION_ID' => 'cid-9'], $t, 'fpm-fcgi', status: static fn (): int => 200);
        Agent::setRuntime($rt);
        self::assertSame('cid-9', Agent::correlationId());
        self::assertMatchesRegularExpression('/^[0-9a-f]{32}$/', (string) Agent::requestId());
        Agent::setEndpoint('/a/{n}');
        self::assertSame('GET /a/{n}', Agent::endpoint());
        self::assertSame("SELECT 1 /*endpoint='GET%20%2Fa%2F%7Bn%7D'*/", Agent::sqlComment('SELECT 1'));
        Agent::recordSql('SELECT 1', 0.25, 1, true);
        $span = Agent::startSql('SELECT 2');
        $span->stop(5);
        $span->stop(6);
        Agent::setExitCode(2);
        $rt->finish(false);
        $end = $t->last('end');
        self::assertSame([['q' => 'SELECT 1', 'd' => 250000, 'rows' => 1, 'err' => true, 'site' => 0], 'SELECT 2'], [$end['sql'][0], $end['sql'][1]['q']]);
        self::assertSame(1, $end['sql'][1]['site'], 'a span has the site of its stop()');
        self::assertSame(5, $end['sql'][1]['rows']);
        self::assertCount(2, $end['sql'], 'a span stops once');
        self::assertSame(2, $end['exit']);
    }

    public function testThrowingTransportThroughAWholeRequest(): void
    {
        $t = new MemoryTransport();
        $t->throw = true;
        self::assertInvisible(function () use ($t): void {
            $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off']);
            $rt = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'], $t, 'fpm-fcgi', timers: static fn (): ?Timer => null);
            Agent::setRuntime($rt);
            $rt->start();
            $rt->onProgress(['{main}']);
            Agent::recordSql('SELECT 1', 0.1);
            $rt->finish(false);
            self::assertSame(3, $t->attempts, 'start, progress and end were tried');
            self::assertSame([], $t->payloads, 'and none got through');
        });
    }

    public function testRealTransportToNowhere(): void
    {
        self::assertInvisible(function (): void {
            $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent/agent.sock', 'profiler' => 'off']);
            $t = new RecordingTransport(new UnixDatagramTransport('/nonexistent/agent.sock'));
            $rt = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'], $t, 'fpm-fcgi', timers: static fn (): ?Timer => null);
            $rt->start();
            $rt->finish(false);
            self::assertSame([false, false], $t->results(), 'start and end failed');
        });
    }

    public function testBrokenEndBuildingIsSwallowed(): void
    {
        $t = new MemoryTransport();
        $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'excimer', 'excimer_request_rate' => '1', 'slow_threshold_ms' => '0']);
        // a profiler result that is not what the contract promises
        $bad = new Support\FakeProfiler(['fn' => [7, ['n' => 'f', 'self' => 'x', 'incl' => 1], ['n' => 'g', 'self' => 0.5, 'incl' => 0.1]], 'stacks' => 7, 'period' => 'x']);
        $rt = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'], $t, 'fpm-fcgi', static fn () => $bad, static fn (): ?Timer => null);
        $rt->start();
        self::assertInvisible(static fn () => $rt->finish(false));
        $end = $t->last('end');
        self::assertNotNull($end, 'the end is sent with what is valid');
        self::assertSame([['n' => 'g', 'self' => 100000, 'incl' => 100000]], $end['fn'], 'self is held to incl');
        self::assertSame([], $end['stacks']);
        self::assertArrayNotHasKey('period', $end);
    }
}
