<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Phalcon;

use Bitville\Apm\Agent;
use Bitville\Apm\Config;
use Bitville\Apm\Phalcon\DbListener;
use Bitville\Apm\Runtime;
use Bitville\Apm\Tests\Support\MemoryTransport;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Doubles.php';

final class DbListenerTest extends TestCase
{
    private MemoryTransport $transport;
    private Runtime $runtime;
    private EventsManager $em;

    protected function setUp(): void
    {
        $this->transport = new MemoryTransport();
        $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off']);
        // A failed request: its end carries the call sites, held until then.
        $this->runtime = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/'], $this->transport, 'fpm-fcgi', status: static fn (): int => 500);
        Agent::setRuntime($this->runtime);
        $this->em = new EventsManager();
        $this->em->attach('db', new DbListener());
    }

    protected function tearDown(): void
    {
        Agent::setRuntime(null);
    }

    /** @return list<array<string, mixed>> */
    private function statements(): array
    {
        $this->runtime->finish(false);
        return $this->transport->last('end')['sql'];
    }

    public function testQueriesAndRows(): void
    {
        $db = new Connection($this->em, static function (string $sql): int {
            usleep(1000);
            return str_starts_with($sql, 'UPDATE') ? 4 : 0;
        });
        self::assertTrue($db->query('SELECT * FROM robots WHERE type = :type', ['type' => 'mechanical']));
        self::assertTrue($db->execute('UPDATE robots SET year = ? WHERE id > ?', [1952, 3]));
        self::assertTrue($db->query('INSERT INTO robots (name) VALUES (?) RETURNING id', ['Astro']));
        $sql = $this->statements();
        self::assertSame(['SELECT * FROM robots WHERE type = :type', 'UPDATE robots SET year = ? WHERE id > ?', 'INSERT INTO robots (name) VALUES (?) RETURNING id'], array_column($sql, 'q'));
        self::assertArrayNotHasKey('rows', $sql[0], 'query() leaves affectedRows stale: not reported');
        self::assertSame(4, $sql[1]['rows']);
        self::assertArrayNotHasKey('rows', $sql[2]);
        foreach ($sql as $s) {
            self::assertGreaterThanOrEqual(0.001, $s['d']);
            self::assertArrayNotHasKey('err', $s);
        }
    }

    public function testFailedStatementIsRecordedByTheNextOneOrAtTheEnd(): void
    {
        $db = new Connection($this->em, static function (string $sql): int {
            if (str_contains($sql, 'missing')) {
                throw new \PDOException('SQLSTATE[42P01]: relation "missing" does not exist');
            }
            return 1;
        });
        foreach (['SELECT * FROM missing', 'SELECT 1', 'DELETE FROM missing'] as $sql) {
            try {
                $db->execute($sql);
            } catch (\PDOException) {
            }
        }
        $sql = $this->statements();
        self::assertSame(['SELECT * FROM missing', 'SELECT 1', 'DELETE FROM missing'], array_column($sql, 'q'));
        self::assertSame([true, false, true], array_map(static fn (array $s): bool => $s['err'] ?? false, $sql));
    }

    public function testNeverCancelsAQuery(): void
    {
        $ran = 0;
        $db = new Connection($this->em, static function () use (&$ran): int {
            $ran++;
            return 0;
        });
        self::assertTrue($db->execute('SELECT 1'));
        self::assertSame(1, $ran);
        Agent::setRuntime(null);
        self::assertTrue($db->execute('SELECT 1'), 'nor without the agent');
        self::assertSame(2, $ran);
    }

    public function testOddConnectionsAreIgnoredQuietly(): void
    {
        $l = new DbListener();
        $l->beforeQuery(new Event('beforeQuery'), new \stdClass());
        $l->afterQuery(new Event('afterQuery'), new \stdClass());
        self::assertSame([], $this->statements(), 'no text, nothing recorded');
    }

    /**
     * The call site is taken in db:beforeQuery: a failed statement, recorded
     * only when the next one starts, keeps its own. (The doubles' frames
     * come first here; Phalcon's own are C frames without a file.)
     */
    public function testCallSiteIsTakenWhenTheStatementStarts(): void
    {
        $db = new Connection($this->em, static function (string $sql): int {
            if (str_contains($sql, 'missing')) {
                throw new \PDOException('SQLSTATE[42P01]: relation "missing" does not exist');
            }
            return 1;
        });
        try {
            $db->execute('SELECT * FROM missing');
        } catch (\PDOException) {
        }
        $failedLine = __LINE__ - 3;
        $db->execute('SELECT 1');
        $okLine = __LINE__ - 1;
        $this->runtime->finish(false);
        $end = $this->transport->last('end');
        self::assertSame([true, false], array_map(static fn (array $s): bool => $s['err'] ?? false, $end['sql']));
        self::assertContains(__FILE__ . ":$failedLine " . __METHOD__, $end['sites'][$end['sql'][0]['site']]);
        self::assertContains(__FILE__ . ":$okLine " . __METHOD__, $end['sites'][$end['sql'][1]['site']]);
    }
}
