<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Config;
use Bitville\Apm\Encoder;
use Bitville\Apm\Messages;
use Bitville\Apm\Redactor;
use Bitville\Apm\RequestRecord;
use Bitville\Apm\Runtime;
use Bitville\Apm\SqlCommenter;
use Bitville\Apm\Tests\Support\DatagramServer;
use Bitville\Apm\Tests\Support\Golden;
use Bitville\Apm\Tests\Support\MemoryTransport;
use Bitville\Apm\Tests\Support\TempDir;
use Bitville\Apm\Transport\UnixDatagramTransport;
use PHPUnit\Framework\TestCase;

/**
 * What the agent emits, compared with the golden messages the daemon's tests
 * decode (testdata/protocol): same keys, same JSON types, same values.
 */
final class GoldenTest extends TestCase
{
    private static function webRecord(bool $forced = false): RequestRecord
    {
        return new RequestRecord(
            id: '5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90',
            pid: 12345,
            project: 'shop',
            cid: '0af7651916cd43dd8448eb211c80319c',
            method: 'GET',
            uri: '/orders/12345',
            endpoint: 'GET /orders/{id}',
            started: 1764294512.120001,
            sapi: 'fpm-fcgi',
            host: 'web-1',
            pool: 'www',
            traceId: '0af7651916cd43dd8448eb211c80319c',
            forced: $forced,
        );
    }

    /** The payload as it would be sent, decoded. @param array<string, mixed> $m @return array<string, mixed> */
    private static function emitted(array $m): array
    {
        $payload = (new Encoder())->encode($m);
        self::assertNotNull($payload);
        return json_decode($payload, true, 512, JSON_THROW_ON_ERROR);
    }

    /**
     * Entries of a golden list with the fields $keys turned from the
     * protocol's microseconds into the seconds the profilers report.
     *
     * @param list<array<string, mixed>> $entries
     * @return list<array<string, mixed>>
     */
    private static function seconds(array $entries, string ...$keys): array
    {
        foreach ($entries as $i => $e) {
            foreach ($keys as $k) {
                $entries[$i][$k] = $e[$k] / 1e6;
            }
        }
        return $entries;
    }

    private static function assertGolden(string $name, array $got): void
    {
        self::assertSame(Golden::normalize(Golden::load($name)), Golden::normalize($got), "emitted $name differs from testdata/protocol/$name.json");
    }

    public function testStart(): void
    {
        $m = (new Messages(new Redactor()))->start(self::webRecord(), 1764294512.123456, 0);
        self::assertGolden('start', self::emitted($m));
    }

    public function testProgress(): void
    {
        $r = self::webRecord();
        $stack = ['{main}', 'Phalcon\Mvc\Application::handle', 'App\Controllers\OrdersController::showAction', 'App\Services\Pricing::recalculate', 'PDOStatement::execute'];
        $m = (new Messages(new Redactor()))->progress($r, 1764294522.130002, 0, 10.010001, 1, 8388608, 9.42, $stack);
        self::assertGolden('progress', self::emitted($m));
    }

    public function testEnd(): void
    {
        $golden = Golden::load('end');
        $r = self::webRecord(forced: true);
        $comment = SqlCommenter::comment($r->endpoint);
        foreach ($golden['sql'] as $s) {
            // the statements the golden shows with the endpoint tag were sent through the commenter
            $q = $s['q'];
            if (str_ends_with($q, ' ' . $comment)) {
                $q = SqlCommenter::apply(substr($q, 0, -strlen(' ' . $comment)), $comment);
            }
            $site = isset($s['site']) ? $r->addSite($golden['sites'][$s['site']]) : -1;
            $r->addSql($q, $s['d'] / 1e6, $s['rows'] ?? null, $s['err'] ?? false, $site);
        }
        foreach ($golden['errors'] as $e) {
            $r->addError($e['type'], $e['msg'], $e['file'], $e['line']);
        }
        $profile = ['fn' => self::seconds($golden['fn'], 'self', 'incl'), 'stacks' => $golden['stacks'], 'period' => $golden['period'] / 1e6, 'wall' => self::seconds($golden[Messages::WALL_KEY] ?? [], 's')];
        $m = (new Messages(new Redactor()))->end($r, 1764294512.168011, 0, 0.04801, 0.031, 0.004, 6291456, 200, $profile, 'excimer');
        self::assertGolden('end', self::emitted($m));
    }

    public function testEndCli(): void
    {
        $golden = Golden::load('end-cli');
        $r = new RequestRecord(
            id: 'c2f4e1a0b3d54f6e8a7b9c0d1e2f3a4b',
            pid: 23456,
            project: 'shop',
            cid: 'c2f4e1a0b3d54f6e8a7b9c0d1e2f3a4b',
            method: 'CLI',
            uri: 'bin/cron/reindex.php',
            endpoint: 'CLI bin/cron/reindex.php',
            started: 1764294540.25,
            sapi: 'cli',
            host: 'web-1',
        );
        $r->exit = 0;
        $r->addSql('SELECT id, body FROM products WHERE updated_at > $1 ORDER BY id LIMIT 500', 0.8125, 500);
        $r->addSql("UPDATE search_index SET doc = to_tsvector('english', 'red shoes') WHERE product_id = 42", 0.003, 1);
        // the third statement is longer than sql_max_length (117 here) and is cut
        $r->addSql("INSERT INTO search_log (product_id, terms, took_ms) VALUES (42, 'red shoes size 44 wide fit leather', 12), (43, 'blue suede shoes', 9)", 0.0015, 2);
        $profile = ['fn' => self::seconds($golden['fn'], 'self', 'incl'), 'stacks' => $golden['stacks'], 'period' => 0.01, 'wall' => self::seconds($golden[Messages::WALL_KEY] ?? [], 's')];
        $m = (new Messages(new Redactor(), 117))->end($r, 1764294600.5, 0, 60.25, 41.5, 2.25, 134217728, 0, $profile, 'excimer');
        self::assertGolden('end-cli', self::emitted($m));
    }

    /**
     * The same messages built by the runtime from a request's globals: the
     * request id, ts, started, wall and CPU cannot be reproduced, so they are
     * compared by type; everything the inputs determine by value.
     */
    public function testRuntimeFromGlobalsMatchesByType(): void
    {
        $config = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off', 'host' => 'web-1', 'pool' => 'www',
            'force_header_secret' => 's3cret', 'sql_site_frames' => '1']);
        $server = [
            'REQUEST_METHOD' => 'GET',
            'REQUEST_URI' => '/orders/12345?expand=items',
            'REQUEST_TIME_FLOAT' => microtime(true),
            'HTTP_TRACEPARENT' => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
            'HTTP_X_BITVILLE_PROFILE' => 's3cret',
        ];
        $t = new MemoryTransport();
        $rt = Runtime::fromGlobals($config, $server, $t, 'fpm-fcgi', status: static fn (): int => 200);
        $rt->start();
        $rt->sql('SELECT 1', 200000, 1);
        $site = __FILE__ . ':' . (__LINE__ - 1) . ' ' . __METHOD__;
        $rt->finish(false);
        [$start, $end] = $t->messages();

        foreach (['start' => $start, 'end' => $end] as $name => $got) {
            $want = Golden::load($name);
            if ($name === 'end') {
                // this request ran one statement, from here, and no profiler
                $want['sql'] = [['q' => 'SELECT 1', 'd' => 200, 'rows' => 1, 'site' => 0]];
                $want['sites'] = [[$site]];
                $want['errors'] = [];
                unset($want['errors_dropped'], $want['fn'], $want['wall_fn'], $want['stacks'], $want['period']);
                $want['profiler'] = 'none';
            }
            self::assertSame(array_keys(Golden::normalize($want)), array_keys(Golden::normalize($got)), "$name keys");
            foreach (['id', 'pid', 'ts', 'started', 'wall', 'cpu_user', 'cpu_sys', 'mem_peak'] as $k) {
                if (array_key_exists($k, $want)) {
                    self::assertSame(get_debug_type($want[$k]), get_debug_type($got[$k]), "$name.$k type");
                    unset($want[$k], $got[$k]);
                }
            }
            self::assertSame(Golden::normalize($want), Golden::normalize($got), "$name values");
        }
        self::assertMatchesRegularExpression('/^[0-9a-f]{32}$/', $start['id']);
        self::assertSame(getmypid(), $start['pid']);
    }

    /** The golden messages through a real unix datagram socket, read back as they arrived. */
    public function testThroughARealSocket(): void
    {
        $dir = TempDir::create();
        try {
            $server = new DatagramServer($dir);
            $transport = new UnixDatagramTransport($server->path);
            $messages = new Messages(new Redactor());
            $sent = [
                'start' => $messages->start(self::webRecord(), 1764294512.123456, 0),
                'progress' => $messages->progress(self::webRecord(), 1764294522.130002, 0, 10.010001, 1, 8388608, 9.42, ['{main}', 'Phalcon\Mvc\Application::handle', 'App\Controllers\OrdersController::showAction', 'App\Services\Pricing::recalculate', 'PDOStatement::execute']),
            ];
            foreach ($sent as $m) {
                self::assertTrue($transport->send((string) (new Encoder())->encode($m)), $transport->lastError());
            }
            $got = $server->messages(2);
            self::assertCount(2, $got);
            self::assertGolden('start', $got[0]);
            self::assertGolden('progress', $got[1]);
            $server->close();
        } finally {
            TempDir::remove($dir);
        }
    }
}
