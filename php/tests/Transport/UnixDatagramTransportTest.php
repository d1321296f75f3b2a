<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Transport;

use Bitville\Apm\Tests\Support\DatagramServer;
use Bitville\Apm\Tests\Support\TempDir;
use Bitville\Apm\Transport\UnixDatagramTransport;
use PHPUnit\Framework\TestCase;

final class UnixDatagramTransportTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = TempDir::create();
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    public function testSendsOneDatagramPerPayload(): void
    {
        $server = new DatagramServer($this->dir);
        $t = new UnixDatagramTransport($server->path);
        $big = '{"v":1,"pad":"' . str_repeat('x', 65536 - 16) . '"}';
        self::assertSame(65536, strlen($big));
        foreach (['{"v":1,"n":1}', $big, '{"v":1,"n":3}'] as $p) {
            self::assertTrue($t->send($p), $t->lastError());
        }
        $got = $server->receive(3);
        self::assertSame(['{"v":1,"n":1}', $big, '{"v":1,"n":3}'], $got);
    }

    public function testMissingSocketFailsQuietly(): void
    {
        $t = new UnixDatagramTransport($this->dir . '/absent.sock');
        $this->assertQuietFailure(fn (): bool => $t->send('{"v":1}'));
    }

    public function testDirectoryInsteadOfSocketFailsQuietly(): void
    {
        mkdir($this->dir . '/sock.d');
        $t = new UnixDatagramTransport($this->dir . '/sock.d');
        $this->assertQuietFailure(fn (): bool => $t->send('{"v":1}'));
    }

    public function testDaemonGoneAfterAStaleSocketFileFailsQuietly(): void
    {
        $server = new DatagramServer($this->dir);
        $path = $server->path;
        // a crashed daemon leaves its socket file behind: nobody reads it
        $s = socket_create(AF_UNIX, SOCK_DGRAM, 0);
        unlink($path);
        socket_bind($s, $path);
        socket_close($s);
        self::assertFileExists($path);
        $t = new UnixDatagramTransport($path);
        $this->assertQuietFailure(fn (): bool => $t->send('{"v":1}'));
    }

    public function testFullQueueFailsAtOnceAndRecovers(): void
    {
        $server = new DatagramServer($this->dir);
        $t = new UnixDatagramTransport($server->path);
        $payload = '{"v":1,"pad":"' . str_repeat('x', 4000) . '"}';
        $sent = 0;
        $refused = false;
        // the receiver never reads: its queue fills; a blocking send would hang here
        for ($i = 0; $i < 100000; $i++) {
            if (!$t->send($payload)) {
                $refused = true;
                break;
            }
            $sent++;
        }
        self::assertTrue($refused, 'a full queue must refuse, not block');
        self::assertGreaterThan(0, $sent);
        self::assertStringContainsString('EAGAIN', $t->lastError());
        self::assertCount($sent, $server->drain());
        self::assertTrue($t->send('{"v":1}'), 'sending works again once the daemon reads: ' . $t->lastError());
        self::assertSame(['{"v":1}'], $server->receive(1));
    }

    public function testDaemonRestartBetweenSends(): void
    {
        $server = new DatagramServer($this->dir);
        $t = new UnixDatagramTransport($server->path);
        self::assertTrue($t->send('{"n":1}'));
        $server->close();
        self::assertFalse($t->send('{"n":2}'));
        $server = new DatagramServer($this->dir);
        self::assertTrue($t->send('{"n":3}'), $t->lastError());
        self::assertSame(['{"n":3}'], $server->receive(1));
        // Restarted between two sends that both find a daemon: the stream's
        // old connection is refused, and the same send connects again.
        $server->close();
        $server = new DatagramServer($this->dir);
        self::assertTrue($t->send('{"n":4}'), $t->lastError());
        self::assertSame(['{"n":4}'], $server->receive(1));
        // The next request's transport finds the kept connection and uses it.
        $next = new UnixDatagramTransport($server->path);
        self::assertTrue($next->send('{"n":5}'), $next->lastError());
        self::assertSame(['{"n":5}'], $server->receive(1));
    }

    private function assertQuietFailure(callable $send): void
    {
        $raised = [];
        set_error_handler(static function (int $no, string $msg) use (&$raised): bool {
            $raised[] = $msg;
            return true;
        });
        error_clear_last();
        ob_start();
        try {
            $ok = $send();
        } finally {
            $out = ob_get_clean();
            restore_error_handler();
        }
        self::assertFalse($ok);
        self::assertSame('', $out);
        self::assertSame([], $raised, 'the application error handler saw: ' . implode('; ', $raised));
        self::assertNull(error_get_last());
    }
}
