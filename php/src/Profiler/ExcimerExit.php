<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Works around an exit race of Excimer 1.0.x (Debian 12's php-excimer
 * 1.0.4): its timers notify through glibc's SIGEV_THREAD, one new thread per
 * tick. A tick that fired shortly before its timer was deleted can still be
 * on its way (signal queued, thread not yet run) when the process exits;
 * that thread then locks a mutex Excimer's module shutdown has destroyed
 * and the process dies with SIGABRT/SIGSEGV — after the script finished,
 * but with exit status 134/139 instead of 0. Measured here with wall-clock
 * timers: 16 of 600 CLI runs at a 1 ms period, 7 of 600 at 10 ms.
 *
 * The fix for CLI scripts (cron jobs must not fail at random): at exit,
 * after every other shutdown function, arm a one-shot timer and wait until
 * its callback has run. Timer notifications are one real-time signal,
 * delivered in order, so by then every earlier tick has been handed to its
 * thread; then wait until those threads have ended: until the process has
 * no thread left but its own and glibc's notification helper
 * (/proc/self/task). A fixed pause of 0.2 ms instead was not always enough
 * on a loaded machine (2 aborts in 40 runs while benchmarks ran beside
 * the tests). It costs about 1.5 ms once per CLI process (1 ms period,
 * interleaved runs: 0 crashes in 500 with it, 11 in 500 without); a
 * process with threads of its own (another extension's) waits up to
 * SETTLE_MAX_SECONDS more.
 *
 * php-fpm workers are not guarded: waiting on every request would cost more
 * than the race (a worker exiting right after a request, i.e. at
 * pm.max_requests, can die after its response was sent; the master logs it
 * and starts a new worker).
 *
 * @internal
 */
final class ExcimerExit
{
    private static bool $registered = false;

    /**
     * The threads of a CLI process once Excimer has armed a timer: its own
     * and the helper glibc starts for SIGEV_THREAD notifications, which
     * stays; each tick's thread comes and goes.
     */
    public const SETTLED_THREADS = 2;

    /** How long settle() waits at most after the marker tick (seconds). */
    public const SETTLE_MAX_SECONDS = 0.05;

    /**
     * Call after stopping an Excimer timer: in CLI, drains at exit.
     */
    public static function guard(): void
    {
        if (self::$registered || \PHP_SAPI !== 'cli') {
            return;
        }
        self::$registered = true;
        try {
            // Registered while shutdown functions run, it runs after them.
            \register_shutdown_function([self::class, 'drain']);
        } catch (\Throwable) {
            self::$registered = false;
        }
    }

    /**
     * Waits (at most $maxWait seconds) until the timer notifications already
     * queued have been handled. Returns whether the marker tick arrived.
     */
    public static function drain(float $maxWait = 0.1): bool
    {
        if (!\class_exists(\ExcimerTimer::class, false)) {
            return false;
        }
        $arrived = false;
        try {
            $timer = new \ExcimerTimer();
            $timer->setEventType(\EXCIMER_REAL);
            // Not shorter: Excimer 1.0.4 marks a timer running only after
            // timer_settime() returns and drops a tick that comes first.
            $timer->setInterval(0.001);
            $timer->setCallback(static function () use (&$arrived): void {
                $arrived = true;
            });
            $now = \hrtime(true);
            $deadline = $now + (int) ($maxWait * 1e9);
            $rearm = 0;
            // The callback runs when PHP next checks for interrupts: on this
            // loop's back-edge after usleep() returns.
            while (!$arrived && $now < $deadline) {
                if ($now >= $rearm) {
                    @$timer->start(); // again if a tick was lost
                    $rearm = $now + 20_000_000;
                }
                \usleep(100);
                $now = \hrtime(true);
            }
            @$timer->stop();
            if (!self::settle(self::SETTLE_MAX_SECONDS)) {
                \usleep(200); // /proc unreadable, or threads of its own: the pause that usually suffices
            }
        } catch (\Throwable) {
            // nothing to do
        }
        return $arrived;
    }

    /**
     * Waits (at most $maxWait seconds) until the process runs no more than
     * SETTLED_THREADS threads: the ticks' notification threads have ended.
     * False when they have not by then, or /proc/self/task cannot be read.
     */
    public static function settle(float $maxWait): bool
    {
        $deadline = \hrtime(true) + (int) ($maxWait * 1e9);
        while (true) {
            $threads = self::threads();
            if ($threads === null) {
                return false;
            }
            if ($threads <= self::SETTLED_THREADS) {
                return true;
            }
            if (\hrtime(true) >= $deadline) {
                return false;
            }
            \usleep(100);
        }
    }

    /** The threads of this process (/proc/self/task), null when unknown. */
    public static function threads(): ?int
    {
        $tasks = @\scandir('/proc/self/task');
        return \is_array($tasks) ? \count($tasks) - 2 : null; // "." and ".."
    }
}
