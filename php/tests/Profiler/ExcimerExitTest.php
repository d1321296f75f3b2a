<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\ExcimerExit;
use PHPUnit\Framework\TestCase;

final class ExcimerExitTest extends TestCase
{
    public function testDrainWaitsForTheMarkerTick(): void
    {
        if (!\extension_loaded('excimer')) {
            self::assertFalse(ExcimerExit::drain());
            return;
        }
        // generous: the marker needs a thread to be scheduled on a busy machine
        self::assertTrue(ExcimerExit::drain(10.0));
    }

    /**
     * After the marker tick, the ticks' notification threads are waited
     * for: none is left when drain() returns.
     */
    public function testDrainLeavesNoTickThread(): void
    {
        if (!\extension_loaded('excimer') || ExcimerExit::threads() === null) {
            self::markTestSkipped('needs excimer and /proc/self/task');
        }
        $timer = new \ExcimerTimer();
        $timer->setEventType(\EXCIMER_REAL);
        $timer->setInterval(0.0002);
        $timer->setPeriod(0.0002);
        $ticks = 0;
        $timer->setCallback(static function () use (&$ticks): void {
            $ticks++;
        });
        $timer->start();
        $seen = 0;
        $until = \hrtime(true) + 20_000_000;
        while (\hrtime(true) < $until) {
            $seen = \max($seen, (int) ExcimerExit::threads());
        }
        $timer->stop();
        self::assertGreaterThan(0, $ticks);
        self::assertGreaterThanOrEqual(ExcimerExit::SETTLED_THREADS, $seen, 'the timer runs a helper thread');
        self::assertTrue(ExcimerExit::drain(10.0));
        self::assertLessThanOrEqual(ExcimerExit::SETTLED_THREADS, ExcimerExit::threads());
    }

    /**
     * A CLI script that profiles at a short period and exits right after
     * stopping must exit cleanly: Excimer 1.0.x can abort at exit otherwise.
     */
    public function testCliScriptsExitCleanly(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $autoload = var_export(__DIR__ . '/autoload.php', true);
        $script = tempnam(sys_get_temp_dir(), 'bvexit');
        self::assertIsString($script);
        file_put_contents($script, <<<PHP
            <?php
            require {$autoload};
            \$p = Bitville\\Apm\\Profiler\\ProfilerFactory::create('excimer', 0.0005, false);
            \$p->start();
            BitvilleProfilerFixture\\burnCpu(0.003);
            register_shutdown_function(static function () use (\$p): void { \$p->stop(); });
            PHP);
        try {
            $failures = [];
            for ($i = 0; $i < 40; $i++) {
                $out = [];
                exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg($script) . ' 2>&1', $out, $rc);
                if ($rc !== 0 || $out !== []) {
                    $failures[] = "run $i: exit $rc " . implode("\n", $out);
                }
            }
            self::assertSame([], $failures);
        } finally {
            unlink($script);
        }
    }
}
