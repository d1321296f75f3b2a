<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Messages;
use Bitville\Apm\Tests\Support\DatagramServer;
use Bitville\Apm\Tests\Support\PhpProcess;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/**
 * A CLI script that runs long, with the agent as production loads it: not
 * drawn by excimer_request_rate, it is still profiled from profile_long_ms
 * on, on both clocks.
 */
final class LongRequestTest extends TestCase
{
    public function testALongCliRunNotDrawnIsProfiledAfterTheMark(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $end = self::runFixture('long-cpu.php', '3', 1000);
        self::assertSame('excimer', $end['profiler']);
        self::assertSame('bitville_test_long_cpu', $end['fn'][0]['n'], json_encode($end['fn']));
        // about 2 s of the 3: the CPU after the 1 s mark (no bound above)
        self::assertGreaterThan(1000000, $end['fn'][0]['self']);
        self::assertSame(100000, $end['period']);
        self::assertNotEmpty($end['stacks']);
        self::assertNotEmpty($end[Messages::WALL_KEY]);
        self::assertSame('bitville_test_long_cpu', $end[Messages::WALL_KEY][0]['n'], json_encode($end[Messages::WALL_KEY]));
        self::assertSame('{main}', $end[Messages::WALL_KEY][0]['c']);
        self::assertGreaterThan(0.5, $end[Messages::WALL_KEY][0]['s']);
    }

    /**
     * Blocked in one call across the mark, the run gets the mark's tick
     * only when the call returns; a run not drawn is still given the time
     * from the mark on, on the call.
     */
    public function testARunBlockedAcrossTheMarkHasTheCall(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $end = self::runFixture('long-wait.php', '1.5', 500);
        $wall = $end[Messages::WALL_KEY] ?? [];
        self::assertNotEmpty($wall, json_encode($end));
        self::assertSame(['usleep', 'bitville_test_long_wait'], [$wall[0]['n'], $wall[0]['c']], json_encode($wall));
        // 1 s from the mark to the call's return; no bound above (a
        // loaded machine returns late)
        self::assertGreaterThan(0.9, $wall[0]['s']);
    }

    /**
     * Runs a fixture script with the agent, not drawn by
     * excimer_request_rate, and returns its end message.
     *
     * @return array<string, mixed>
     */
    private static function runFixture(string $fixture, string $arg, int $profileLongMs): array
    {
        $dir = TempDir::create();
        $server = new DatagramServer($dir);
        try {
            $p = PhpProcess::run(__DIR__ . '/Fixtures/' . $fixture, [$arg], [
                'BITVILLE_APM_ENABLED' => '1',
                'BITVILLE_APM_PROJECT' => 'shop',
                'BITVILLE_APM_SOCKET' => $server->path,
                'BITVILLE_APM_CONFIG' => '',
                'BITVILLE_APM_EXCIMER_REQUEST_RATE' => '0.0001',
                'BITVILLE_APM_PROFILE_LONG_MS' => (string) $profileLongMs,
            ]);
            self::assertSame(0, $p->exitCode, $p->stderr);
            self::assertSame("done\n", $p->stdout);
            $end = null;
            foreach ($server->messages() as $m) {
                if ($m['type'] === 'end') {
                    $end = $m;
                }
            }
            self::assertNotNull($end, 'an end message');
            return $end;
        } finally {
            $server->close();
            TempDir::remove($dir);
        }
    }
}
