<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Transport;

use Bitville\Apm\Encoder;
use Bitville\Apm\Tests\Support\MemoryTransport;
use Bitville\Apm\Tests\Support\TempDir;
use Bitville\Apm\Transport\Channel;
use Bitville\Apm\Transport\DropCounter;
use Bitville\Apm\Transport\Spool;
use PHPUnit\Framework\TestCase;

final class ChannelTest extends TestCase
{
    /** @return array<string, mixed> */
    private static function msg(string $type, int $dropped): array
    {
        return ['v' => 1, 'type' => $type, 'dropped' => $dropped];
    }

    public function testDropsAreCountedAndReportedByTheNextMessageThatGetsThrough(): void
    {
        $t = new MemoryTransport();
        $c = new Channel($t, new DropCounter(1, false));
        $t->refuse = true;
        self::assertFalse($c->send(self::msg('start', $c->dropped()), $c->dropped()));
        self::assertFalse($c->send(self::msg('progress', $c->dropped()), $c->dropped()));
        self::assertSame(2, $c->dropped());
        $t->refuse = false;
        $d = $c->dropped();
        self::assertTrue($c->send(self::msg('end', $d), $d));
        self::assertSame(2, $t->messages()[0]['dropped']);
        self::assertSame(0, $c->dropped(), 'reported once');
        self::assertSame(3, $t->attempts, 'every message was tried');
        self::assertCount(1, $t->payloads, 'one got through');
    }

    public function testAThrowingTransportIsAFailedSend(): void
    {
        $t = new MemoryTransport();
        $t->throw = true;
        $c = new Channel($t, new DropCounter(1, false));
        self::assertFalse($c->send(self::msg('start', 0), 0));
        self::assertSame(1, $c->dropped());
    }

    public function testEndMessagesAreSpooledNotDropped(): void
    {
        $dir = TempDir::create();
        try {
            $t = new MemoryTransport();
            $t->refuse = true;
            $drops = new DropCounter(7, false);
            $spool = new Spool($dir, 1 << 20, 7, $drops);
            $c = new Channel($t, $drops, spool: $spool);
            self::assertFalse($c->send(self::msg('start', 0), 0), 'starts are not spooled');
            $d = $c->dropped();
            self::assertSame(1, $d);
            self::assertTrue($c->send(self::msg('end', $d), $d));
            self::assertSame([], $t->payloads, 'nothing reached the daemon');
            self::assertSame(0, $c->dropped(), 'the spooled end carries the count');
            $files = $spool->files();
            self::assertCount(1, $files);
            self::assertSame('{"v":1,"type":"end","dropped":1}', file_get_contents($files[0]));
        } finally {
            TempDir::remove($dir);
        }
    }

    public function testSpooledMessagesDeletedToMakeRoomAreReportedAsDropped(): void
    {
        $dir = TempDir::create();
        try {
            $t = new MemoryTransport();
            $t->refuse = true;
            $drops = new DropCounter(7, false);
            $c = new Channel($t, $drops, spool: new Spool($dir, 100, 7, $drops));
            $end = ['v' => 1, 'type' => 'end', 'dropped' => 0, 'pad' => str_repeat('x', 40)];
            for ($i = 0; $i < 3; $i++) {
                $d = $c->dropped();
                self::assertTrue($c->send(['dropped' => $d] + $end, $d), "end $i is spooled");
            }
            // each later end deleted the one before it: the first deletion
            // travels in the spooled third end, the second is pending
            $files = glob($dir . '/*.json') ?: [];
            self::assertCount(1, $files);
            self::assertSame(1, json_decode((string) file_get_contents($files[0]), true)['dropped']);
            self::assertSame(1, $c->dropped());
            $t->refuse = false;
            $d = $c->dropped();
            self::assertTrue($c->send(self::msg('start', $d), $d));
            self::assertSame(1, $t->messages()[0]['dropped'], 'and reported by the next message that got through');
            self::assertSame(0, $c->dropped());
        } finally {
            TempDir::remove($dir);
        }
    }

    public function testMessagesThatNeedMoreThanJsonGoThroughTheEncoder(): void
    {
        $t = new MemoryTransport();
        $c = new Channel($t, new DropCounter(1, false));
        // a control character: cleaned, not sent as the daemon would reject it
        self::assertTrue($c->send(['v' => 2, 'type' => 'progress', 'endpoint' => "GET /a\x01b"], 0));
        self::assertSame('GET /a?b', $t->messages()[0]['endpoint']);
        // too large for a datagram: fitted, and what was cut is named
        $sql = array_fill(0, 40, ['q' => str_repeat('x', 3000), 'd' => 1]);
        $end = ['v' => 2, 'type' => 'end', 'sql' => $sql, 'sql_dropped' => 0, 'errors' => [], 'truncated' => []];
        self::assertTrue($c->send($end, 0));
        self::assertLessThanOrEqual(Encoder::MAX_BYTES, strlen($t->payloads[1]));
        self::assertContains('sql.q', $t->messages()[1]['truncated']);
        self::assertCount(40, $t->messages()[1]['sql']);
    }

    public function testAGivenEncoderEncodesEveryMessage(): void
    {
        $t = new MemoryTransport();
        $c = new Channel($t, new DropCounter(1, false), new Encoder(1000));
        $end = ['v' => 2, 'type' => 'end', 'sql' => array_fill(0, 2, ['q' => str_repeat('x', 600), 'd' => 1]),
            'sql_dropped' => 0, 'errors' => [], 'truncated' => []];
        self::assertTrue($c->send($end, 0));
        self::assertLessThanOrEqual(1000, strlen($t->payloads[0]), 'fitted to the encoder\'s limit, not the datagram\'s');
        self::assertSame(['sql.q'], $t->messages()[0]['truncated']);
    }

    public function testUnencodableMessageCountsAsDropped(): void
    {
        $t = new MemoryTransport();
        $c = new Channel($t, new DropCounter(1, false));
        self::assertFalse($c->send(['v' => 1, 'type' => 'start', 'pad' => str_repeat('x', 70000)], 0));
        self::assertSame(0, $t->attempts);
        self::assertSame(1, $c->dropped());
    }
}
