<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * The agent's own problems, reported out of band in PHP's error_log (never
 * to the application's output or error handlers).
 *
 * A broken configuration is logged in one line per CLI run; under php-fpm,
 * where it would be one line per request, at most once a minute per message
 * and host user, marked by a file in the temp directory.
 */
final class ErrorLog
{
    public const THROTTLE_SECONDS = 60;

    private function __construct()
    {
    }

    public static function configError(string $message, string $sapi = PHP_SAPI): void
    {
        set_error_handler(static fn (): bool => true);
        try {
            $line = 'bitville-apm: agent disabled: invalid configuration: ' . str_replace(["\r", "\n"], ' ', $message);
            if ($sapi !== 'cli' && $sapi !== 'phpdbg') {
                $marker = self::markerPath($line);
                clearstatcache(true, $marker);
                $mtime = is_file($marker) ? filemtime($marker) : false;
                if ($mtime !== false && $mtime > time() - self::THROTTLE_SECONDS) {
                    return;
                }
                touch($marker);
            }
            error_log($line);
        } catch (\Throwable) {
        } finally {
            restore_error_handler();
        }
    }

    /** The throttle marker of a log line. */
    public static function markerPath(string $line): string
    {
        $uid = function_exists('posix_geteuid') ? posix_geteuid() : getmyuid();
        return sys_get_temp_dir() . '/bitville-apm-config-error-' . $uid . '-' . hash('crc32b', $line);
    }
}
