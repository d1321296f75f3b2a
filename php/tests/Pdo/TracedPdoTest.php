<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Pdo;

use Bitville\Apm\Agent;
use Bitville\Apm\Config;
use Bitville\Apm\Pdo\TracedPdo;
use Bitville\Apm\Pdo\TracedStatement;
use Bitville\Apm\RequestRecord;
use Bitville\Apm\Runtime;
use Bitville\Apm\Tests\Support\MemoryTransport;
use Bitville\Apm\Tests\Support\Postgres;
use BitvilleSiteFixture\Acme\Db\Gateway;
use BitvilleSiteFixture\App\OrderRepository;
use PHPUnit\Framework\TestCase;

/** TracedPdo against a real PostgreSQL (a throwaway cluster, see Support\Postgres). */
final class TracedPdoTest extends TestCase
{
    private MemoryTransport $transport;
    private Runtime $runtime;

    protected function setUp(): void
    {
        if (!extension_loaded('pdo_pgsql')) {
            self::fail('pdo_pgsql is needed (Debian package php8.2-pgsql)');
        }
        $this->transport = new MemoryTransport();
        $this->runtime = $this->runtimeWith([]);
        Agent::setRuntime($this->runtime);
    }

    protected function tearDown(): void
    {
        Agent::setRuntime(null);
    }

    /** @param array<string, string> $config */
    private function runtimeWith(array $config): Runtime
    {
        $c = Config::fromValues($config + ['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off']);
        return Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => '/orders/7'], $this->transport, 'fpm-fcgi', status: static fn (): int => 200);
    }

    /** @param array<int, mixed> $options */
    private static function connect(array $options = []): TracedPdo
    {
        return new TracedPdo(Postgres::shared()->dsn(), 'postgres', null, $options + [\PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION]);
    }

    /** @return list<array<string, mixed>> */
    private function statements(): array
    {
        $this->runtime->finish(false);
        return $this->transport->last('end')['sql'];
    }

    public function testQueryExecPrepareExecute(): void
    {
        $pdo = self::connect();
        $tag = " /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/";
        $pdo->exec('CREATE TEMP TABLE t (id int, name text)');
        self::assertSame(3, $pdo->exec("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')"));
        $st = $pdo->query('SELECT id, name FROM t ORDER BY id');
        self::assertInstanceOf(TracedStatement::class, $st);
        self::assertSame([[1, 'a'], [2, 'b'], [3, 'c']], $st->fetchAll(\PDO::FETCH_NUM));
        $st = $pdo->query('SELECT name FROM t WHERE id = 2', \PDO::FETCH_COLUMN, 0);
        self::assertSame(['b'], $st->fetchAll());
        $prep = $pdo->prepare('UPDATE t SET name = :name WHERE id <= :id');
        self::assertTrue($prep->execute(['name' => 'z', 'id' => 2]));
        self::assertSame(2, $prep->rowCount());
        self::assertTrue($prep->execute(['name' => 'y', 'id' => 1]));
        $sel = $pdo->prepare('SELECT current_query()');
        $sel->execute();
        $sentText = $sel->fetchColumn();

        $sql = $this->statements();
        self::assertSame([
            'CREATE TEMP TABLE t (id int, name text)' . $tag,
            "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')" . $tag,
            'SELECT id, name FROM t ORDER BY id' . $tag,
            'SELECT name FROM t WHERE id = 2' . $tag,
            'UPDATE t SET name = :name WHERE id <= :id' . $tag,
            'UPDATE t SET name = :name WHERE id <= :id' . $tag,
            'SELECT current_query()' . $tag,
        ], array_column($sql, 'q'));
        self::assertSame([0, 3, 3, 1, 2, 1, 1], array_column($sql, 'rows'));
        foreach ($sql as $s) {
            self::assertGreaterThan(0.0, $s['d']);
            self::assertArrayNotHasKey('err', $s);
        }
        // what PostgreSQL received carries the comment (placeholders rewritten by PDO)
        self::assertSame('SELECT current_query()' . $tag, $sentText);
    }

    public function testFailuresAreRecordedAndRethrownUnchanged(): void
    {
        $pdo = self::connect();
        foreach ([
            static fn () => $pdo->query('SELECT * FROM no_such_table'),
            static fn () => $pdo->exec('DROP TABLE no_such_table'),
            static fn () => $pdo->prepare('SELECT 1/0')->execute(),
        ] as $i => $call) {
            try {
                $call();
                self::fail("call $i did not throw");
            } catch (\PDOException $e) {
                self::assertSame(\PDOException::class, get_class($e));
                self::assertNotEmpty($e->errorInfo);
                self::assertStringStartsWith('SQLSTATE[', $e->getMessage());
                self::assertStringNotContainsString('Bitville', $e->getTraceAsString() === '' ? '' : $e->getMessage());
            }
        }
        $sql = $this->statements();
        self::assertCount(3, $sql);
        foreach ($sql as $s) {
            self::assertTrue($s['err']);
            self::assertArrayNotHasKey('rows', $s);
        }
    }

    public function testSilentErrorModeReturnsFalseAsUsual(): void
    {
        $pdo = self::connect([\PDO::ATTR_ERRMODE => \PDO::ERRMODE_SILENT]);
        self::assertFalse($pdo->exec('DROP TABLE no_such_table'));
        self::assertFalse($pdo->query('SELECT * FROM no_such_table'));
        self::assertSame('42P01', $pdo->errorCode());
        $sql = $this->statements();
        self::assertSame([true, true], array_column($sql, 'err'));
    }

    public function testTransactions(): void
    {
        $pdo = self::connect();
        self::assertTrue($pdo->beginTransaction());
        $pdo->exec('SELECT 1');
        self::assertTrue($pdo->commit());
        self::assertTrue($pdo->beginTransaction());
        self::assertTrue($pdo->rollBack());
        self::assertSame(['BEGIN', 'SELECT 1', 'COMMIT', 'BEGIN', 'ROLLBACK'], array_map(
            static fn (string $q): string => explode(' /*', $q)[0],
            array_column($this->statements(), 'q'),
        ));
    }

    public function testNoCommentWhenSwitchedOffOrAlreadyCommented(): void
    {
        $this->runtime = $this->runtimeWith(['sqlcommenter' => '0']);
        Agent::setRuntime($this->runtime);
        $pdo = self::connect();
        $pdo->query('SELECT 1');
        $pdo->query('SELECT 2 /* mine */');
        self::assertSame(['SELECT 1', 'SELECT 2 /* mine */'], array_column($this->statements(), 'q'));

        $this->runtime = $this->runtimeWith([]);
        Agent::setRuntime($this->runtime);
        $pdo->query('SELECT 3 /* mine */');
        self::assertSame(['SELECT 3 /* mine */'], array_column($this->statements(), 'q'));
    }

    public function testCorrelationIdInTheComment(): void
    {
        $this->runtime = $this->runtimeWith(['sqlcommenter_correlation' => '1']);
        Agent::setRuntime($this->runtime);
        $pdo = self::connect();
        $got = $pdo->query('SELECT current_query()')->fetchColumn();
        self::assertSame("SELECT current_query() /*correlation_id='" . rawurlencode($this->runtime->record->cid) . "',endpoint='GET%20%2Forders%2F%7Bid%7D'*/", $got);
    }

    public function testWithoutTheAgentItIsPlainPdo(): void
    {
        Agent::setRuntime(null);
        $pdo = self::connect();
        self::assertSame('SELECT current_query()', $pdo->query('SELECT current_query()')->fetchColumn());
        $st = $pdo->prepare('SELECT :x::int + 1');
        $st->execute(['x' => 1]);
        self::assertSame(2, $st->fetchColumn());
        self::assertSame([], $this->transport->payloads);
        // Its statements are PDO's own: no user code per prepare or execute.
        self::assertSame(\PDOStatement::class, \get_class($st));
        Agent::setRuntime($this->runtime);
        self::assertInstanceOf(\Bitville\Apm\Pdo\TracedStatement::class, self::connect()->prepare('SELECT 1'));
    }

    public function testPersistentAndOwnStatementClassStillTraceQueries(): void
    {
        $pdo = self::connect([\PDO::ATTR_PERSISTENT => true]);
        $pdo->query('SELECT 1');
        $pdo = self::connect([\PDO::ATTR_STATEMENT_CLASS => [OwnStatement::class]]);
        self::assertInstanceOf(OwnStatement::class, $pdo->query('SELECT 2'));
        self::assertSame(['SELECT 1', 'SELECT 2'], array_map(
            static fn (string $q): string => explode(' /*', $q)[0],
            array_column($this->statements(), 'q'),
        ));
    }

    public function testStatementsPastTheCapAreCounted(): void
    {
        $pdo = self::connect();
        $rt = $this->runtimeWith(['sql_max_statements' => '1']);
        Agent::setRuntime($rt);
        self::assertSame(1, $pdo->query('SELECT 1')->fetchColumn());
        self::assertSame(2, $pdo->query('SELECT 2')->fetchColumn());
        $rt->finish(false);
        $end = $this->transport->last('end');
        self::assertCount(1, $end['sql']);
        self::assertSame(1, $end['sql_dropped']);
    }

    public function testCaptureFailureNeverReachesTheApplication(): void
    {
        $pdo = self::connect();
        // break the record so that every capture throws inside the agent:
        // a typed int counter at its maximum cannot be incremented
        $this->runtime = $this->runtimeWith(['sql_max_statements' => '0']);
        Agent::setRuntime($this->runtime);
        (new \ReflectionProperty(RequestRecord::class, 'sqlDropped'))->setValue($this->runtime->record, PHP_INT_MAX);
        try {
            $this->runtime->record->addSql('SELECT 1', 0.1);
            self::fail('the broken record does not throw');
        } catch (\Error) {
        }
        $raised = [];
        set_error_handler(static function (int $no, string $msg) use (&$raised): bool {
            $raised[] = $msg;
            return true;
        });
        ob_start();
        try {
            self::assertSame(1, $pdo->query('SELECT 1')->fetchColumn());
            self::assertSame(0, $pdo->exec('SELECT 1'));
            $st = $pdo->prepare('SELECT 1');
            self::assertTrue($st->execute());
            $this->runtime->finish(false);
        } finally {
            $out = ob_get_clean();
            restore_error_handler();
        }
        self::assertSame('', $out);
        self::assertSame([], $raised);
        self::assertSame(2147483648, $this->transport->last('end')['sql_dropped'], 'the end is still sent, within the protocol');
    }
}

/** An application's own statement class. */
final class OwnStatement extends \PDOStatement
{
    protected function __construct()
    {
    }

    /**
     * The call site of a statement run through a library under /vendor/ is
     * the application's code that called the library: the agent's frames
     * (TracedStatement, Runtime) and the library's are skipped.
     */
    public function testCallSitesAreTheApplicationsFrames(): void
    {
        require_once dirname(__DIR__) . '/Fixtures/sites/vendor/acme/db/Gateway.php';
        require_once dirname(__DIR__) . '/Fixtures/sites/app/OrderRepository.php';
        $this->runtime = $this->runtimeWith(['sql_site_frames' => '2', 'sqlcommenter' => '0']);
        Agent::setRuntime($this->runtime);
        $repo = new OrderRepository(new Gateway(self::connect()));
        $repo->find(7);
        $findLine = __LINE__ - 1;
        $repo->countTwice();
        $countLine = __LINE__ - 1;
        $repo->find(8);
        self::connect()->exec('SELECT 1');
        $execLine = __LINE__ - 1;

        $this->runtime->finish(false);
        $end = $this->transport->last('end');
        $app = realpath(dirname(__DIR__) . '/Fixtures/sites/app/OrderRepository.php');
        $here = __FILE__ . ':%d ' . __METHOD__;
        self::assertSame([$app . ':' . OrderRepository::FIND_LINE . ' ' . OrderRepository::class . '::find', sprintf($here, $findLine)], $end['sites'][0]);
        self::assertSame([$app . ':' . OrderRepository::COUNT_LINE . ' ' . OrderRepository::class . '::countTwice', sprintf($here, $countLine)], $end['sites'][1]);
        self::assertSame(sprintf($here, $execLine), $end['sites'][2][0], 'TracedPdo called by the application directly');
        self::assertCount(3, $end['sites'], 'one entry per distinct site');
        self::assertSame(['SELECT 7', 'SELECT count(*) FROM (VALUES (1)) v', 'SELECT count(*) FROM (VALUES (1)) v', 'SELECT 8', 'SELECT 1'], array_column($end['sql'], 'q'));
        self::assertSame([0, 1, 1, 0, 2], array_column($end['sql'], 'site'), 'a statement refers to its site by index');
    }

    public function testNoCallSitesWhenSwitchedOff(): void
    {
        $this->runtime = $this->runtimeWith(['sql_site_frames' => '0']);
        Agent::setRuntime($this->runtime);
        self::connect()->query('SELECT 1');
        $this->runtime->finish(false);
        $end = $this->transport->last('end');
        self::assertCount(1, $end['sql']);
        self::assertArrayNotHasKey('site', $end['sql'][0]);
        self::assertArrayNotHasKey('sites', $end);
    }
}
