<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Transport;

use Bitville\Apm\Tests\Support\TempDir;
use Bitville\Apm\Transport\DropCounter;
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
        $spool = new Spool($this->dir . '/spool', 1 << 20, 4242, new DropCounter(4242, false));
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

    public function testBoundedBySizeDroppingTheOldest(): void
    {
        $drops = new DropCounter(1, false);
        $spool = new Spool($this->dir, 1000, 1, $drops);
        foreach (['a', 'b', 'c'] as $c) {
            self::assertTrue($spool->write(str_repeat($c, 300)));
        }
        self::assertSame(0, $drops->pending());
        self::assertTrue($spool->write(str_repeat('d', 300)), 'a fourth would pass 1000 bytes: the oldest makes room');
        self::assertSame(1, $drops->pending(), 'the deleted message is counted as dropped');
        self::assertSame(['b', 'c', 'd'], array_map(static fn (string $f): string => ((string) file_get_contents($f))[0], $spool->files()));
        self::assertTrue($spool->write(str_repeat('e', 100)), 'fits exactly');
        self::assertCount(4, $spool->files());
        self::assertSame(1, $drops->pending());
        self::assertFalse($spool->write(str_repeat('z', 2000)), 'larger than the whole spool');
        self::assertCount(4, $spool->files(), 'and nothing was deleted for it');
    }

    public function testEvictionFreesAQuarter(): void
    {
        $drops = new DropCounter(1, false);
        $spool = new Spool($this->dir, 4000, 1, $drops);
        for ($i = 0; $i < 10; $i++) {
            self::assertTrue($spool->write(sprintf('%03d', $i) . str_repeat('x', 397)));
        }
        self::assertSame(0, $drops->pending());
        // 4000 of 4000 bytes: the next write frees 1000 (a quarter), three files
        self::assertTrue($spool->write('010' . str_repeat('x', 397)));
        self::assertSame(3, $drops->pending());
        $first = static fn (array $files): array => array_map(static fn (string $f): string => substr((string) file_get_contents($f), 0, 3), $files);
        self::assertSame(['003', '004', '005', '006', '007', '008', '009', '010'], $first($spool->files()), 'the oldest went');
        $evicted = static fn (string $dir): string => explode(' ', trim((string) file_get_contents($dir . '/' . Spool::SIZE_FILE)))[2] ?? '';
        self::assertSame('3', $evicted($this->dir), 'the size file counts the evictions for the daemon');
        // room for two more without deleting anything
        self::assertTrue($spool->write('011' . str_repeat('x', 397)));
        self::assertTrue($spool->write('012' . str_repeat('x', 397)));
        self::assertSame(3, $drops->pending());
        self::assertCount(10, $spool->files());
        self::assertTrue($spool->write('013' . str_repeat('x', 397)));
        self::assertSame('6', $evicted($this->dir), 'the count only grows');
    }

    public function testSpaceFreedByTheDaemonIsReused(): void
    {
        $drops = new DropCounter(1, false);
        $spool = new Spool($this->dir, 1000, 1, $drops);
        self::assertTrue($spool->write(str_repeat('x', 600)));
        // the daemon replays and deletes the file; the size estimate is high
        // until the directory is counted again
        foreach ($spool->files() as $f) {
            unlink($f);
        }
        self::assertTrue($spool->write(str_repeat('y', 600)));
        self::assertSame(0, $drops->pending(), 'nothing was lost');
        self::assertCount(1, $spool->files());
        self::assertTrue($spool->write(str_repeat('z', 300)), 'the estimate was corrected');
        self::assertSame(0, $drops->pending());
    }

    public function testDerivedDirectoryIsNeverCreated(): void
    {
        $spool = new Spool($this->dir . '/agent.spool', 1 << 20, 1, new DropCounter(1, false), create: false);
        self::assertFalse($spool->write('{}'));
        self::assertDirectoryDoesNotExist($this->dir . '/agent.spool');
        mkdir($this->dir . '/agent.spool');
        self::assertTrue($spool->write('{}'), 'used once the daemon created it');
        self::assertCount(1, $spool->files());
    }

    public function testBusyLockWaitsBrieflyThenWritesOutsideTheEstimate(): void
    {
        $spool = new Spool($this->dir, 1 << 20, 1, new DropCounter(1, false));
        self::assertTrue($spool->write('{}'));
        $sizeFile = $this->dir . '/' . Spool::SIZE_FILE;
        $estimate = (string) file_get_contents($sizeFile);
        $lock = fopen($sizeFile, 'c+');
        self::assertNotFalse($lock);
        self::assertTrue(flock($lock, LOCK_EX));
        try {
            // flock locks are per open file description: another one conflicts even in this process
            $t = hrtime(true);
            self::assertTrue($spool->write('{"x":1}'), 'kept although the lock stayed busy');
            $waited = (hrtime(true) - $t) / 1e6;
            self::assertGreaterThan(2.0, $waited, 'it waited for the lock');
            self::assertLessThan(100.0, $waited, 'but not long');
            self::assertSame($estimate, (string) file_get_contents($sizeFile), 'outside the estimate');
        } finally {
            flock($lock, LOCK_UN);
            fclose($lock);
        }
        self::assertCount(2, $spool->files());
        self::assertTrue($spool->write('{"x":2}'));
        self::assertCount(3, $spool->files());
    }

    public function testUnwritableDirectoryFailsQuietly(): void
    {
        file_put_contents($this->dir . '/file', 'x');
        $spool = new Spool($this->dir . '/file/sub', 1 << 20, 1, new DropCounter(1, false));
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
