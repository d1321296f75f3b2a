<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Tests\Support\DatagramServer;
use Bitville\Apm\Tests\Support\PhpProcess;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/**
 * The agent as production loads it: bootstrap.php as auto_prepend_file of a
 * PHP CLI process, sending to a real unix datagram socket. Every script is
 * also run without the agent: output, errors and exit status must be the
 * same.
 */
final class BootstrapTest extends TestCase
{
    private string $dir;
    private DatagramServer $server;

    /** @var list<array<string, mixed>> what the server received while children ran */
    private array $received = [];

    protected function setUp(): void
    {
        $this->dir = TempDir::create();
        $this->server = new DatagramServer($this->dir);
    }

    protected function tearDown(): void
    {
        $this->server->close();
        TempDir::remove($this->dir);
    }

    /** @return array<string, string> */
    private function env(array $extra = []): array
    {
        return $extra + [
            'BITVILLE_APM_ENABLED' => '1',
            'BITVILLE_APM_PROJECT' => 'shop',
            'BITVILLE_APM_SOCKET' => $this->server->path,
            'BITVILLE_APM_PROFILER' => 'off',
            'BITVILLE_APM_CONFIG' => '',
        ];
    }

    /** A fixture's path as the command line gives it: relative to the cwd, the tests directory. */
    private static function fixture(string $name): string
    {
        return 'Fixtures/' . $name;
    }

    private static function fixtureFile(string $name): string
    {
        return __DIR__ . '/Fixtures/' . $name;
    }

    /**
     * Runs a fixture with and without the agent and asserts the application
     * cannot tell the difference.
     *
     * @param list<string> $args
     * @param array<string, string> $env
     */
    private function runBoth(string $script, array $args = [], array $env = [], array $ini = []): PhpProcess
    {
        $with = $this->runAgent($script, $args, $env, $ini);
        $without = PhpProcess::run(self::fixture($script), $args, [], $ini, __DIR__, false);
        self::assertSame($without->stdout, $with->stdout, "$script: stdout changed by the agent");
        self::assertSame($without->stderr, $with->stderr, "$script: stderr changed by the agent");
        self::assertSame($without->exitCode, $with->exitCode, "$script: exit status changed by the agent");
        self::assertSame(self::untimed($without->errorLog), self::untimed($with->errorLog), "$script: error_log changed by the agent");
        return $with;
    }

    /**
     * Runs a fixture with the agent, reading the socket meanwhile as the
     * daemon does (the kernel queues only net.unix.max_dgram_qlen datagrams).
     *
     * @param list<string> $args
     * @param array<string, string> $env
     * @param array<string, string> $ini
     */
    private function runAgent(string $script, array $args = [], array $env = [], array $ini = [], bool $defaults = true): PhpProcess
    {
        return PhpProcess::run(self::fixture($script), $args, $defaults ? $this->env($env) : $env, $ini, __DIR__, whileRunning: function (): void {
            foreach ($this->server->messages() as $m) {
                $this->received[] = $m;
            }
        });
    }

    /** Everything received so far, and forgets it. @return list<array<string, mixed>> */
    private function received(): array
    {
        $got = array_merge($this->received, $this->server->messages());
        $this->received = [];
        return $got;
    }

    /** An error log without its timestamps. */
    private static function untimed(string $log): string
    {
        return (string) preg_replace('/^\[[^\]]+\] /m', '', $log);
    }

    /** @return array<string, array<string, mixed>> the start and end messages by type */
    private function startAndEnd(): array
    {
        $messages = $this->received();
        self::assertSame(['start', 'end'], array_column($messages, 'type'), 'a start and an end, nothing else');
        return ['start' => $messages[0], 'end' => $messages[1]];
    }

    public function testCliScript(): void
    {
        $p = $this->runBoth('basic.php', ['--flag']);
        self::assertSame("hello\ndefault\napp handler: Undefined array key \"missing\"\n\nbye\n", $p->stdout);
        ['start' => $start, 'end' => $end] = $this->startAndEnd();
        self::assertSame('CLI Fixtures/basic.php', $start['endpoint'], 'the script as given, relative to the cwd');
        self::assertSame('Fixtures/basic.php', $start['uri']);
        self::assertSame('CLI', $start['method']);
        self::assertSame('cli', $start['sapi']);
        self::assertSame($start['id'], $end['id']);
        self::assertSame($start['pid'], $end['pid']);
        self::assertSame(0, $end['status']);
        self::assertArrayNotHasKey('exit', $end, 'a normal end does not know its exit status');
        self::assertSame("SELECT * FROM users WHERE password = '[REDACTED]'", $end['sql'][0]['q']);
        self::assertSame(12500, $end['sql'][0]['d']);
        self::assertSame('SELECT pg_sleep(0)', $end['sql'][1]['q']);
        self::assertSame([['type' => 'E_WARNING', 'msg' => 'Undefined array key "missing"', 'file' => self::fixtureFile('basic.php'), 'line' => 26]], $end['errors']);
        self::assertFalse($end['fatal']);
        self::assertSame('none', $end['profiler']);
    }

    public function testUncaughtException(): void
    {
        $p = $this->runBoth('exception.php');
        self::assertSame(255, $p->exitCode);
        self::assertStringContainsString('PHP Fatal error:  Uncaught RuntimeException: boom with token=abc123', $p->errorLog);
        ['end' => $end] = $this->startAndEnd();
        self::assertTrue($end['fatal']);
        self::assertSame([['type' => 'RuntimeException', 'msg' => 'boom with token=[REDACTED]', 'file' => self::fixtureFile('exception.php'), 'line' => 7]], $end['errors']);
    }

    public function testFatalError(): void
    {
        $p = $this->runBoth('fatal.php');
        self::assertSame(255, $p->exitCode);
        ['end' => $end] = $this->startAndEnd();
        self::assertTrue($end['fatal']);
        self::assertSame('Error', $end['errors'][0]['type']);
        self::assertStringContainsString('undefined_function_for_the_test', $end['errors'][0]['msg']);
    }

    public function testOutOfMemory(): void
    {
        $p = $this->runBoth('oom.php');
        self::assertSame(255, $p->exitCode);
        ['end' => $end] = $this->startAndEnd();
        self::assertTrue($end['fatal']);
        self::assertSame('E_ERROR', $end['errors'][0]['type']);
        self::assertStringContainsString('Allowed memory size', $end['errors'][0]['msg']);
    }

    public function testExitStatus(): void
    {
        $p = $this->runBoth('exit.php');
        self::assertSame(3, $p->exitCode);
        ['end' => $end] = $this->startAndEnd();
        self::assertArrayNotHasKey('exit', $end);

        $p = $this->runBoth('exit.php', ['report']);
        ['end' => $end] = $this->startAndEnd();
        self::assertSame(3, $end['exit'], 'reported by the script through Agent::setExitCode()');
    }

    public function testIncludedTwice(): void
    {
        $this->runBoth('twice.php');
        $this->startAndEnd();
    }

    public function testForkedChildSendsNothing(): void
    {
        if (!function_exists('pcntl_fork')) {
            self::markTestSkipped('needs ext-pcntl');
        }
        $with = $this->runAgent('fork.php');
        self::assertSame("child\nparent\n", $with->stdout);
        ['end' => $end, 'start' => $start] = $this->startAndEnd();
        self::assertSame($start['pid'], $end['pid']);
    }

    public function testShutdownFunctionsAndBuffersRunFirst(): void
    {
        $p = $this->runBoth('shutdown.php');
        self::assertSame("BODY\nAPP SHUTDOWN\nNESTED SHUTDOWN\n", $p->stdout);
        ['end' => $end] = $this->startAndEnd();
        self::assertGreaterThanOrEqual(0.2, $end['wall'], 'the application\'s shutdown functions are part of the request');
    }

    public function testExitInAShutdownFunction(): void
    {
        $p = $this->runBoth('exit-in-shutdown.php');
        self::assertSame("body\nfirst\n", $p->stdout);
        self::assertSame(4, $p->exitCode);
        ['start' => $start, 'end' => $end] = $this->startAndEnd();
        self::assertSame($start['id'], $end['id'], 'the end is sent from a destructor');
    }

    public function testBrokenConfigLogsOneLineAndDisables(): void
    {
        $ini = $this->dir . '/agent.ini';
        file_put_contents($ini, "enabled = 1\nproject = shop\nsocket = {$this->server->path}\nsample_rate = lots\n");
        $with = $this->runAgent('basic.php', [], ['BITVILLE_APM_CONFIG' => $ini], [], false);
        $without = PhpProcess::run(self::fixture('basic.php'), [], [], [], __DIR__, false);
        self::assertSame($without->stdout, $with->stdout);
        self::assertSame($without->stderr, $with->stderr);
        $lines = array_values(array_filter(explode("\n", $with->errorLog), static fn (string $l): bool => str_contains($l, 'bitville-apm')));
        self::assertCount(1, $lines, $with->errorLog);
        self::assertStringContainsString('bitville-apm: agent disabled: invalid configuration: sample_rate "lots" must be a number from 0 to 1', $lines[0]);
        self::assertSame([], $this->received());

        // an explicitly named file that is missing
        $with = $this->runAgent('basic.php', [], ['BITVILLE_APM_CONFIG' => $this->dir . '/nope.ini'], [], false);
        self::assertSame($without->stdout, $with->stdout);
        self::assertSame(1, substr_count($with->errorLog, 'cannot read config file ' . $this->dir . '/nope.ini'));

        // a bad regex
        $with = $this->runAgent('basic.php', [], ['BITVILLE_APM_ENDPOINT_RULES' => '#(# => /x']);
        self::assertSame($without->stdout, $with->stdout);
        self::assertSame(1, substr_count($with->errorLog, 'bitville-apm: agent disabled: invalid configuration: endpoint_rules: bad regex'));
    }

    public function testDisabledOrUnconfiguredDoesNothing(): void
    {
        foreach ([[], ['BITVILLE_APM_ENABLED' => '0'] + $this->env()] as $env) {
            $with = $this->runAgent('basic.php', [], $env, [], false);
            self::assertStringContainsString("bye\n", $with->stdout);
            self::assertStringNotContainsString('bitville-apm', $with->errorLog);
        }
        self::assertSame([], $this->received());
    }

    public function testSocketMissing(): void
    {
        $p = $this->runBoth('basic.php', [], ['BITVILLE_APM_SOCKET' => $this->dir . '/absent.sock']);
        self::assertStringNotContainsString('bitville-apm', $p->errorLog);
        self::assertSame([], $this->received());
        self::assertDirectoryDoesNotExist($this->dir . '/absent.spool', 'the derived spool is never created');

        // Without the socket even an existing derived spool gets nothing:
        // no daemon, no cost.
        mkdir($this->dir . '/absent.spool');
        $this->runBoth('basic.php', [], ['BITVILLE_APM_SOCKET' => $this->dir . '/absent.sock']);
        self::assertSame(['.', '..'], scandir($this->dir . '/absent.spool'));
    }

    public function testSocketPathIsADirectory(): void
    {
        mkdir($this->dir . '/sock.d');
        $p = $this->runBoth('basic.php', [], ['BITVILLE_APM_SOCKET' => $this->dir . '/sock.d']);
        self::assertStringNotContainsString('bitville-apm', $p->errorLog);
        self::assertSame([], $this->received());
        self::assertDirectoryDoesNotExist($this->dir . '/sock.d.spool', 'nothing is written without the derived spool');
    }

    public function testDaemonNotTakingWithTheDerivedSpool(): void
    {
        // A socket path that exists but takes nothing (here a plain file,
        // like a stale socket), and the spool the daemon created beside it.
        touch($this->dir . '/stale.sock');
        mkdir($this->dir . '/stale.spool');
        $this->runBoth('basic.php', [], ['BITVILLE_APM_SOCKET' => $this->dir . '/stale.sock']);
        $files = glob($this->dir . '/stale.spool/*.json') ?: [];
        self::assertCount(1, $files, 'the end message is spooled in the derived directory');
        $end = json_decode((string) file_get_contents($files[0]), true);
        self::assertSame('end', $end['type']);
        self::assertSame(1, $end['dropped'], 'the start that could not be sent is counted');
    }

    public function testDaemonGoneWithSpool(): void
    {
        $spool = $this->dir . '/spool';
        $this->runBoth('basic.php', [], ['BITVILLE_APM_SOCKET' => $this->dir . '/absent.sock', 'BITVILLE_APM_SPOOL_DIR' => $spool]);
        $files = glob($spool . '/*.json') ?: [];
        self::assertCount(1, $files, 'the end message is spooled');
        $end = json_decode((string) file_get_contents($files[0]), true);
        self::assertSame('end', $end['type']);
        self::assertSame(1, $end['dropped'], 'the start that could not be sent is counted');
        self::assertMatchesRegularExpression('/^\d{19}-' . $end['pid'] . '-[0-9a-f]{8}\.json$/', basename($files[0]));
    }

    public function testProgressOfALongRequest(): void
    {
        if (!extension_loaded('excimer')) {
            self::markTestSkipped('needs ext-excimer (Debian package php-excimer)');
        }
        $p = $this->runAgent('busy.php', ['1.0'], ['BITVILLE_APM_PROGRESS_AFTER_MS' => '100', 'BITVILLE_APM_PROGRESS_INTERVAL_MS' => '100']);
        self::assertSame("done\n", $p->stdout);
        $messages = $this->received();
        $types = array_column($messages, 'type');
        self::assertSame('start', $types[0]);
        self::assertSame('end', $types[count($types) - 1]);
        $progress = array_values(array_filter($messages, static fn (array $m): bool => $m['type'] === 'progress'));
        self::assertNotEmpty($progress, 'a one-second request with progress after 100 ms ticks at least once');
        self::assertSame(1, $progress[0]['seq']);
        self::assertContains('bitville_test_busy_loop', $progress[0]['stack']);
        self::assertSame('{main}', $progress[0]['stack'][0]);
        foreach ($progress[0]['stack'] as $frame) {
            self::assertStringNotContainsString('Bitville\\Apm\\', $frame, 'the agent\'s own frames are not in the stack');
        }
    }

    public function testPreload(): void
    {
        $user = function_exists('posix_getpwuid') ? (posix_getpwuid(posix_geteuid())['name'] ?? 'root') : 'root';
        $ini = ['opcache.enable_cli' => '1', 'opcache.preload' => dirname(__DIR__) . '/preload.php', 'opcache.preload_user' => $user];
        $p = $this->runAgent('preloaded.php', [], [], $ini);
        self::assertSame("preloaded\n", $p->stdout, $p->stderr);
        $this->startAndEnd();
    }

    public function testDelayedStart(): void
    {
        if (!extension_loaded('excimer')) {
            self::markTestSkipped('needs ext-excimer (Debian package php-excimer)');
        }
        $env = ['BITVILLE_APM_START_DELAY_MS' => '100', 'BITVILLE_APM_PROGRESS_AFTER_MS' => '0'];
        $this->runAgent('busy.php', ['0.001'], $env);
        self::assertSame(['end'], array_column($this->received(), 'type'), 'a request shorter than the delay sends only its end');
        $this->runAgent('busy.php', ['0.5'], $env);
        $messages = $this->received();
        self::assertSame(['start', 'end'], array_column($messages, 'type'), 'a longer one sends its start from the timer');
        self::assertSame($messages[0]['id'], $messages[1]['id']);
    }

    public function testSamplingProfile(): void
    {
        if (!extension_loaded('excimer')) {
            self::markTestSkipped('needs ext-excimer (Debian package php-excimer)');
        }
        $this->runAgent('busy.php', ['0.5'], ['BITVILLE_APM_PROFILER' => 'excimer', 'BITVILLE_APM_EXCIMER_PERIOD_MS' => '5', 'BITVILLE_APM_EXCIMER_REQUEST_RATE' => '1', 'BITVILLE_APM_SLOW_THRESHOLD_MS' => '100']);
        ['end' => $end] = $this->startAndEnd();
        self::assertSame('excimer', $end['profiler']);
        self::assertSame(5000, $end['period']);
        self::assertNotEmpty($end['fn']);
        self::assertSame('bitville_test_busy_loop', $end['fn'][0]['n'], 'the busy function has the most self time');
        self::assertNotEmpty($end['stacks']);
        self::assertStringContainsString('bitville_test_busy_loop', $end['stacks'][0]['s']);
    }
}
