<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * The agent's own problems, reported out of band in PHP's error_log (never
 * to the application's output or error handlers).
 *
 * A broken configuration, or an unexpected failure while the agent starts,
 * is logged in one line per CLI run; under php-fpm, where it would be one
 * line per request, at most once a minute per message and host user, marked
 * by a file in the temp directory.
 */
final class ErrorLog
{
    public const THROTTLE_SECONDS = 60;

    private function __construct()
    {
    }

    public static function configError(string $message, string $sapi = \PHP_SAPI): void
    {
        self::disabled('invalid configuration: ' . $message, $sapi);
    }

    /** The agent failed in a way it did not expect ($e) and disabled itself for this request. */
    public static function internalError(\Throwable $e, string $sapi = \PHP_SAPI): void
    {
        self::disabled('internal error: ' . \get_class($e) . ': ' . $e->getMessage(), $sapi);
    }

    /** Logs "bitville-apm: agent disabled: $reason" once per CLI run, at most once a minute under php-fpm. */
    private static function disabled(string $reason, string $sapi): void
    {
        \set_error_handler(static fn (): bool => true);
        try {
            $line = 'bitville-apm: agent disabled: ' . \str_replace(["\r", "\n"], ' ', $reason);
            if ($sapi !== 'cli' && $sapi !== 'phpdbg') {
                $marker = self::markerPath($line);
                \clearstatcache(true, $marker);
                $mtime = \is_file($marker) ? \filemtime($marker) : false;
                if ($mtime !== false && $mtime > \time() - self::THROTTLE_SECONDS) {
                    return;
                }
                \touch($marker);
            }
            \error_log($line);
        } catch (\Throwable) {
        } finally {
            \restore_error_handler();
        }
    }

    /** The throttle marker of a log line. */
    public static function markerPath(string $line): string
    {
        $uid = \function_exists('posix_geteuid') ? \posix_geteuid() : \getmyuid();
        return \sys_get_temp_dir() . '/bitville-apm-config-error-' . $uid . '-' . \hash('crc32b', $line);
    }
}
