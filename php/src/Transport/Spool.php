<?php

declare(strict_types=1);

namespace Bitville\Apm\Transport;

/**
 * A bounded disk spool for end messages the daemon could not take (it was
 * down, stalled, or its queue full); the daemon replays the directory while
 * it runs and when it starts (exporters/phpagent/spool.go). Format, fixed
 * with the daemon:
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
 * to be spooled, when they were last counted, and how many files were
 * deleted to make room since the file was made: "<bytes> <time> <evicted>";
 * the daemon reads the last for bitville_agent_php_spool_evicted_total),
 * under an flock taken with LOCK_NB and a short bounded wait (lock()): a
 * worker never waits long for another one; past the wait it writes its file
 * outside the estimate. The daemon deletes replayed files without touching
 * the size file, so the estimate otherwise only errs high. When it
 * says "full", the directory is counted; if it really is full, the oldest
 * files are deleted until a quarter of spool_max_bytes (or the message, if
 * larger) is free, so the listing is paid once per many writes. The newest
 * messages are kept: they describe the stall that is going on. Each deleted
 * file is a lost message, counted in the worker's DropCounter (reported in
 * `dropped` by its next message).
 */
final class Spool
{
    public const SIZE_FILE = '.bitville-spool-size';

    /**
     * $create: make the directory when it is missing (an explicit spool_dir);
     * false for the default derived from the socket, which only the daemon
     * creates: without it nothing is written.
     */
    public function __construct(
        private readonly string $dir,
        private readonly int $maxBytes,
        private readonly int $pid,
        private readonly DropCounter $drops,
        private readonly bool $create = true,
    ) {
    }

    /** Writes $payload as one spool file; false when it cannot (no directory, locked, failing). Never throws. */
    public function write(string $payload): bool
    {
        \set_error_handler(static fn (): bool => true);
        try {
            return $this->writeLocked($payload);
        } catch (\Throwable) {
            return false;
        } finally {
            \restore_error_handler();
        }
    }

    /** The spool files currently in the directory, oldest first. @return list<string> */
    public function files(): array
    {
        $files = \glob($this->dir . '/*.json') ?: [];
        \sort($files, \SORT_STRING);
        return $files;
    }

    private function writeLocked(string $payload): bool
    {
        $len = \strlen($payload);
        if ($len === 0 || $len > $this->maxBytes) {
            return false;
        }
        if (!\is_dir($this->dir) && (!$this->create || (!\mkdir($this->dir, 0770, true) && !\is_dir($this->dir)))) {
            return false;
        }
        $lock = \fopen($this->dir . '/' . self::SIZE_FILE, 'c+');
        if ($lock === false) {
            return false;
        }
        try {
            if (!self::lock($lock)) {
                // Another worker holds the lock past the wait (it is making
                // room): keep the message anyway, outside the size estimate,
                // which then errs low by one message. The daemon's own bound
                // (agent.spool-max-bytes) still holds.
                return $this->put($payload, $len);
            }
            [$size, $countedAt, $evicted] = $this->readSize($lock);
            if ($size + $len > $this->maxBytes) {
                [$size, $deleted] = $this->makeRoom($len, \max($len, \intdiv($this->maxBytes, 4)));
                $countedAt = \time();
                $evicted += $deleted;
            }
            $ok = $this->put($payload, $len);
            $this->writeSize($lock, $ok ? $size + $len : $size, $countedAt, $evicted);
            return $ok;
        } finally {
            \flock($lock, \LOCK_UN);
            \fclose($lock);
        }
    }

    /** Writes one spool file: the payload under a .tmp name, then renamed. */
    private function put(string $payload, int $len): bool
    {
        $name = \sprintf('%s/%s-%d-%s.json', $this->dir, self::nanoseconds(), $this->pid, \bin2hex(\random_bytes(4)));
        $tmp = $name . '.tmp';
        if (\file_put_contents($tmp, $payload) !== $len || !\rename($tmp, $name)) {
            @\unlink($tmp);
            return false;
        }
        return true;
    }

    /**
     * Takes the lock, waiting a little: in a burst every worker spools at
     * once, and each holds the lock for tens of microseconds. A worker that
     * is making room holds it longer; after about 5 ms of waiting, give up.
     *
     * @param resource $lock
     */
    private static function lock($lock): bool
    {
        for ($wait = 50; ; $wait *= 2) {
            if (\flock($lock, \LOCK_EX | \LOCK_NB)) {
                return true;
            }
            if ($wait > 1600) {
                return false;
            }
            \usleep($wait);
        }
    }

    /**
     * Counts the directory and, when $len more bytes do not fit, deletes the
     * oldest files until $free bytes are free. Returns the bytes left and
     * the files deleted.
     *
     * @return array{0: int, 1: int}
     */
    private function makeRoom(int $len, int $free): array
    {
        $files = $this->files();
        $sizes = [];
        $total = 0;
        foreach ($files as $f) {
            \clearstatcache(true, $f);
            $n = \filesize($f);
            if (\is_int($n)) {
                $sizes[$f] = $n;
                $total += $n;
            }
        }
        if ($total + $len <= $this->maxBytes) {
            return [$total, 0]; // the daemon replayed enough
        }
        $target = $this->maxBytes - $free;
        $deleted = 0;
        foreach ($sizes as $f => $n) {
            if ($total <= $target) {
                break;
            }
            if (\unlink($f)) {
                $deleted++;
                $total -= $n;
            } elseif (!\file_exists($f)) {
                $total -= $n; // replayed by the daemon meanwhile: not lost
            }
        }
        $this->drops->lost($deleted);
        return [$total, $deleted];
    }

    /**
     * @param resource $lock
     * @return array{0: int, 1: int, 2: int} bytes, unix time of the last count, files evicted
     */
    private function readSize($lock): array
    {
        \rewind($lock);
        $s = (string) \stream_get_contents($lock);
        if (\preg_match('/^(\d+) (\d+)(?: (\d+))?/', $s, $m) !== 1) {
            return [$this->count(), \time(), 0];
        }
        return [(int) $m[1], (int) $m[2], (int) ($m[3] ?? 0)];
    }

    /** @param resource $lock */
    private function writeSize($lock, int $size, int $countedAt, int $evicted): void
    {
        \ftruncate($lock, 0);
        \rewind($lock);
        \fwrite($lock, $size . ' ' . $countedAt . ' ' . $evicted . "\n");
        \fflush($lock);
    }

    /** The bytes of the *.json files in the directory. */
    private function count(): int
    {
        $total = 0;
        foreach (\glob($this->dir . '/*.json') ?: [] as $f) {
            \clearstatcache(true, $f);
            $n = \filesize($f);
            $total += \is_int($n) ? $n : 0;
        }
        return $total;
    }

    /** Unix time in nanoseconds as a 19-digit string (until the year 2286). */
    private static function nanoseconds(): string
    {
        [$usec, $sec] = \explode(' ', \microtime());
        return $sec . \substr($usec, 2, 6) . \sprintf('%03d', \hrtime(true) % 1000);
    }
}
