<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\Frames;
use Bitville\Apm\Profiler\ProgressTimer;
use PHPUnit\Framework\TestCase;

use function BitvilleProfilerFixture\burnCpu;
use function BitvilleProfilerFixture\outer;

require_once __DIR__ . '/Fixture/workload.php';

final class ProgressTimerTest extends TestCase
{
    private const BURN = 'BitvilleProfilerFixture\\burnCpu';

    /**
     * Burns CPU in outer()/burnCpu() until $done() or a generous deadline.
     */
    private static function busyUntil(callable $done, float $deadlineSec = 15.0): void
    {
        $end = hrtime(true) + (int) ($deadlineSec * 1e9);
        while (!$done() && hrtime(true) < $end) {
            outer(0.01);
        }
    }

    public function testTicksWithTheStackOfTheRunningCode(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $stacks = [];
        $timer = ProgressTimer::start(0.05, 0.05, static function (array $stack) use (&$stacks): void {
            $stacks[] = $stack;
        });
        self::assertInstanceOf(ProgressTimer::class, $timer);

        // wait for a tick that interrupted burnCpu (almost every tick does)
        $hit = null;
        self::busyUntil(static function () use (&$stacks, &$hit): bool {
            foreach ($stacks as $s) {
                if (end($s) === self::BURN) {
                    $hit = $s;
                    return true;
                }
            }
            return false;
        });
        $timer->stop();

        self::assertNotSame([], $stacks, 'ticked at least once');
        self::assertNotNull($hit, 'a tick interrupted burnCpu: ' . json_encode($stacks));
        self::assertSame(Frames::MAIN, $hit[0]);
        self::assertSame('BitvilleProfilerFixture\\outer', $hit[\count($hit) - 2]);
        foreach ($stacks as $s) {
            self::assertSame(array_values($s), $s);
            self::assertLessThanOrEqual(Frames::MAX_PROGRESS_FRAMES, \count($s));
            foreach ($s as $frame) {
                self::assertIsString($frame);
                self::assertStringNotContainsString('Bitville\\Apm\\', $frame, 'agent, timer and test frames are hidden');
                self::assertLessThanOrEqual(Frames::MAX_NAME_BYTES, \strlen($frame));
            }
        }

        // no tick after stop()
        $n = \count($stacks);
        burnCpu(0.3);
        self::assertCount($n, $stacks);
    }

    public function testExceptionsFromTheCallbackAreSwallowed(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $calls = 0;
        $timer = ProgressTimer::start(0.02, 0.02, static function (array $stack) use (&$calls): void {
            $calls++;
            throw new \RuntimeException('from the tick');
        });
        self::assertNotNull($timer);
        self::busyUntil(static function () use (&$calls): bool {
            return $calls >= 2;
        });
        $timer->stop();
        self::assertGreaterThanOrEqual(2, $calls);
    }

    public function testTheTimerStopsWhenDropped(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $calls = 0;
        $timer = ProgressTimer::start(0.02, 0.02, static function () use (&$calls): void {
            $calls++;
        });
        self::assertNotNull($timer);
        self::busyUntil(static function () use (&$calls): bool {
            return $calls >= 1;
        });
        self::assertGreaterThanOrEqual(1, $calls);
        $timer = null;
        $n = $calls;
        burnCpu(0.2);
        self::assertSame($n, $calls);
    }

    public function testBadArgumentsGiveNoTimer(): void
    {
        self::assertNull(ProgressTimer::start(0.0, 1.0, static function (): void {
        }));
        self::assertNull(ProgressTimer::start(-1.0, 1.0, static function (): void {
        }));
        self::assertNull(ProgressTimer::start(NAN, 1.0, static function (): void {
        }));
        if (\extension_loaded('excimer')) {
            // a bad interval falls back to the first delay
            $t = ProgressTimer::start(30.0, -5.0, static function (): void {
            });
            self::assertNotNull($t);
            $t->stop();
            $t->stop();
        }
    }

    public function testBacktraceToStack(): void
    {
        $src = \dirname(__DIR__, 2) . '/src';
        $closure = static function (): void {
        };
        $line = (new \ReflectionFunction($closure))->getStartLine();
        // debug_backtrace() inside the timer callback: frame 0 is the callback
        $trace = [
            ['function' => '{closure}', 'class' => 'Bitville\\Apm\\Profiler\\ProgressTimer', 'file' => '/app/src/Pricing.php', 'line' => 20],
            ['function' => 'total', 'class' => 'App\\Pricing', 'type' => '->', 'file' => '/app/src/Orders.php', 'line' => 10],
            ['function' => 'query', 'class' => 'Bitville\\Apm\\Pdo\\TracedPdo', 'type' => '->', 'file' => '/app/src/Orders.php', 'line' => 9],
            ['function' => '{closure}', 'object' => $closure, 'file' => '/app/src/Orders.php', 'line' => 8],
            ['function' => '{closure}', 'file' => $src . '/Agent.php', 'line' => 7],
            ['function' => 'show', 'class' => 'App\\Orders', 'type' => '::', 'file' => '/app/config/routes.php', 'line' => 5],
            ['function' => 'require_once', 'args' => ['/app/config/routes.php'], 'file' => '/app/public/index.php', 'line' => 3],
        ];
        self::assertSame([
            '{main}',
            '/app/config/routes.php',
            'App\\Orders::show',
            '{closure}',
            '{closure:' . __FILE__ . '(' . $line . ')}',
            'App\\Pricing::total',
        ], ProgressTimer::fromBacktrace($trace));

        // interrupted in top-level code: only {main}
        self::assertSame(['{main}'], ProgressTimer::fromBacktrace([['function' => '{closure}', 'file' => '/app/index.php', 'line' => 3]]));
        // a shutdown function has no calling file: no {main}
        self::assertSame(['App\\onShutdown'], ProgressTimer::fromBacktrace([
            ['function' => '{closure}', 'file' => '/app/x.php', 'line' => 3],
            ['function' => 'App\\onShutdown'],
        ]));
        // the agent's own shutdown: nothing of the application
        self::assertSame([], ProgressTimer::fromBacktrace([
            ['function' => '{closure}', 'file' => $src . '/Agent.php', 'line' => 3],
            ['function' => 'shutdown', 'class' => 'Bitville\\Apm\\Agent'],
        ]));
        self::assertSame([], ProgressTimer::fromBacktrace([]));

        $deep = [['function' => '{closure}', 'file' => '/app/x.php', 'line' => 1]];
        for ($i = 0; $i < 300; $i++) {
            $deep[] = ['function' => 'f' . $i . str_repeat('x', 600), 'file' => '/app/x.php', 'line' => 1];
        }
        $stack = ProgressTimer::fromBacktrace($deep);
        self::assertCount(Frames::MAX_PROGRESS_FRAMES, $stack);
        self::assertSame(Frames::TRUNCATED, $stack[0]);
        self::assertSame(Frames::cut('f0' . str_repeat('x', 600), 512), $stack[127], 'the innermost frame is kept');
    }
}
