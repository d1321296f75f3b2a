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
 * thread; a short pause lets those threads finish. It costs about 1.5 ms
 * once per CLI process (1 ms period, interleaved runs: 0 crashes in 500
 * with it, 11 in 500 without).
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
            \usleep(200);
        } catch (\Throwable) {
            // nothing to do
        }
        return $arrived;
    }
}
