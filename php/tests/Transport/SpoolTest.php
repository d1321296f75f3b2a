<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Transport;

use Bitville\Apm\Tests\Support\TempDir;
use Bitville\Apm\Transport\Spool;
use PHPUnit\Framework\TestCase;

final class SpoolTest extends TestCase
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

    public function testFileFormat(): void
    {
        $spool = new Spool($this->dir . '/spool', 1 << 20, 4242);
        $payload = '{"v":1,"type":"end","id":"abc"}';
        self::assertTrue($spool->write($payload));
        self::assertTrue($spool->write($payload . ' '));
        $files = $spool->files();
        self::assertCount(2, $files);
        foreach ($files as $f) {
            self::assertMatchesRegularExpression('/^\d{19}-4242-[0-9a-f]{8}\.json$/', basename($f));
        }
        self::assertSame($payload, file_get_contents($files[0]), 'exactly the payload, oldest first');
        self::assertSame($payload . ' ', file_get_contents($files[1]));
        self::assertSame([], glob($this->dir . '/spool/*.tmp'), 'no temporary file is left');
        // the name starts with the time in nanoseconds
        $ns = (int) substr(basename($files[0]), 0, 19);
        self::assertEqualsWithDelta(microtime(true), $ns / 1e9, 60);
    }

    public function testBoundedBySize(): void
    {
        $spool = new Spool($this->dir, 1000, 1);
        $payload = str_repeat('x', 300);
        self::assertTrue($spool->write($payload));
        self::assertTrue($spool->write($payload));
        self::assertTrue($spool->write($payload));
        self::assertFalse($spool->write($payload), 'a fourth would pass 1000 bytes');
        self::assertTrue($spool->write(str_repeat('y', 100)));
        self::assertCount(4, $spool->files());
        self::assertFalse($spool->write(str_repeat('z', 2000)), 'larger than the whole spool');
    }

    public function testSpaceFreedByTheDaemonIsReused(): void
    {
        $spool = new Spool($this->dir, 1000, 1);
        self::assertTrue($spool->write(str_repeat('x', 600)));
        self::assertFalse($spool->write(str_repeat('x', 600)));
        // the daemon replays and deletes the file; the size estimate is high
        // until the directory is counted again, at most once a second
        foreach ($spool->files() as $f) {
            unlink($f);
        }
        $deadline = microtime(true) + 10;
        $ok = false;
        while (!$ok && microtime(true) < $deadline) {
            $ok = $spool->write(str_repeat('x', 600));
            if (!$ok) {
                usleep(100000);
            }
        }
        self::assertTrue($ok);
        self::assertCount(1, $spool->files());
    }

    public function testBusyLockDropsWithoutWaiting(): void
    {
        $spool = new Spool($this->dir, 1 << 20, 1);
        self::assertTrue($spool->write('{}'));
        $lock = fopen($this->dir . '/' . Spool::SIZE_FILE, 'c+');
        self::assertNotFalse($lock);
        self::assertTrue(flock($lock, LOCK_EX));
        try {
            // flock locks are per open file description: another one conflicts even in this process
            self::assertFalse($spool->write('{"x":1}'));
        } finally {
            flock($lock, LOCK_UN);
            fclose($lock);
        }
        self::assertTrue($spool->write('{"x":1}'));
    }

    public function testUnwritableDirectoryFailsQuietly(): void
    {
        file_put_contents($this->dir . '/file', 'x');
        $spool = new Spool($this->dir . '/file/sub', 1 << 20, 1);
        $raised = 0;
        set_error_handler(static function () use (&$raised): bool {
            $raised++;
            return true;
        });
        try {
            self::assertFalse($spool->write('{}'));
        } finally {
            restore_error_handler();
        }
        self::assertSame(0, $raised);
    }
}
