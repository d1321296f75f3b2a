<?php

declare(strict_types=1);

namespace App;

/**
 * An advisory lock that is never released: the stand-in for a request
 * stuck behind an external resource. It polls in short sleeps, so the
 * request stays interruptible and a sampling profiler sees it waiting here.
 */
final class Locks
{
    public static function waitForLock(string $name, float $timeoutSeconds): bool
    {
        $deadline = microtime(true) + $timeoutSeconds;
        while (microtime(true) < $deadline) {
            if (self::tryAcquire($name)) {
                return true;
            }
            usleep(50_000);
        }
        return false;
    }

    private static function tryAcquire(string $name): bool
    {
        // Held by a job that never finishes.
        return $name === '';
    }
}
