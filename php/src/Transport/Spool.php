<?php

declare(strict_types=1);

namespace Bitville\Apm\Transport;

/**
 * A bounded disk spool for end messages the daemon could not take (it was
 * down or its queue full); the daemon replays the directory when it starts
 * (exporters/phpagent/spool.go). Format, fixed with the daemon:
 *
 * - one file per message, named `<unix-nanoseconds>-<pid>-<8 hex random>.json`,
 *   holding exactly the datagram payload that would have been sent;
 * - written as the same name plus `.tmp`, then rename()d, so the daemon never
 *   reads a partial file;
 * - the *.json files together stay under spool_max_bytes.
 *
 * Only end messages are spooled: a start or progress replayed after a
 * restart describes a request that is long over.
 *
 * The size is tracked cheaply in `.bitville-spool-size` (the bytes believed
 * to be spooled and when they were last counted), under an flock taken with
 * LOCK_NB: a worker never waits for another one; if the lock is busy the
 * message is dropped like any other. The daemon deletes replayed files
 * without touching the size file, so the estimate only errs high: when it
 * says "full", the directory is counted again (at most once a second) before
 * the message is dropped.
 */
final class Spool
{
    public const SIZE_FILE = '.bitville-spool-size';

    public function __construct(
        private readonly string $dir,
        private readonly int $maxBytes,
        private readonly int $pid,
    ) {
    }

    /** Writes $payload as one spool file; false when full, locked or failing. Never throws. */
    public function write(string $payload): bool
    {
        set_error_handler(static fn (): bool => true);
        try {
            return $this->writeLocked($payload);
        } catch (\Throwable) {
            return false;
        } finally {
            restore_error_handler();
        }
    }

    /** The spool files currently in the directory, oldest first. @return list<string> */
    public function files(): array
    {
        $files = glob($this->dir . '/*.json') ?: [];
        sort($files, SORT_STRING);
        return $files;
    }

    private function writeLocked(string $payload): bool
    {
        $len = strlen($payload);
        if ($len === 0 || $len > $this->maxBytes) {
            return false;
        }
        if (!is_dir($this->dir) && !mkdir($this->dir, 0770, true) && !is_dir($this->dir)) {
            return false;
        }
        $lock = fopen($this->dir . '/' . self::SIZE_FILE, 'c+');
        if ($lock === false) {
            return false;
        }
        try {
            if (!flock($lock, LOCK_EX | LOCK_NB)) {
                return false;
            }
            [$size, $countedAt] = $this->readSize($lock);
            $now = time();
            if ($size + $len > $this->maxBytes) {
                if ($countedAt >= $now) {
                    return false; // counted within this second: really full
                }
                $size = $this->count();
                $countedAt = $now;
                if ($size + $len > $this->maxBytes) {
                    $this->writeSize($lock, $size, $countedAt);
                    return false;
                }
            }
            $name = sprintf('%s/%s-%d-%s.json', $this->dir, self::nanoseconds(), $this->pid, bin2hex(random_bytes(4)));
            $tmp = $name . '.tmp';
            if (file_put_contents($tmp, $payload) !== $len) {
                unlink($tmp);
                return false;
            }
            if (!rename($tmp, $name)) {
                unlink($tmp);
                return false;
            }
            $this->writeSize($lock, $size + $len, $countedAt);
            return true;
        } finally {
            flock($lock, LOCK_UN);
            fclose($lock);
        }
    }

    /**
     * @param resource $lock
     * @return array{0: int, 1: int} bytes, unix time of the last count
     */
    private function readSize($lock): array
    {
        rewind($lock);
        $s = (string) stream_get_contents($lock);
        if (preg_match('/^(\d+) (\d+)/', $s, $m) !== 1) {
            return [$this->count(), time()];
        }
        return [(int) $m[1], (int) $m[2]];
    }

    /** @param resource $lock */
    private function writeSize($lock, int $size, int $countedAt): void
    {
        ftruncate($lock, 0);
        rewind($lock);
        fwrite($lock, $size . ' ' . $countedAt . "\n");
        fflush($lock);
    }

    /** The bytes of the *.json files in the directory. */
    private function count(): int
    {
        $total = 0;
        foreach (glob($this->dir . '/*.json') ?: [] as $f) {
            clearstatcache(true, $f);
            $n = filesize($f);
            $total += is_int($n) ? $n : 0;
        }
        return $total;
    }

    /** Unix time in nanoseconds as a 19-digit string (until the year 2286). */
    private static function nanoseconds(): string
    {
        [$usec, $sec] = explode(' ', microtime());
        return $sec . substr($usec, 2, 6) . sprintf('%03d', hrtime(true) % 1000);
    }
}
