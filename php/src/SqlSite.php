<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * The code that ran a statement: the first frames of the application on the
 * stack, innermost first, each "file:line function" (docs/protocol.md,
 * `sites`).
 *
 * One debug_backtrace() per statement, without arguments and bounded: the
 * frames kept plus SCAN_EXTRA, room for the agent's own frames (up to five:
 * this class, RequestRecord, Runtime, TracedPdo or the Phalcon listener) and
 * for a database library's between the application and the driver. An
 * application frame deeper than that is not found; the site then has fewer
 * frames, or none.
 */
final class SqlSite
{
    /** Frames read beyond the ones kept (see the class comment). */
    public const SCAN_EXTRA = 24;

    /** The function of code outside any function, and of a file's top level. */
    private const MAIN = '{main}';

    /** The language constructs that run a file's top-level code. */
    private const INCLUDES = ['include' => true, 'include_once' => true, 'require' => true, 'require_once' => true];

    /** The agent's source directory, found once. */
    private static ?string $src = null;

    private function __construct()
    {
    }

    /**
     * The application's frames at the caller, at most $max; [] when none
     * is within reach.
     *
     * @return list<string>
     */
    public static function capture(int $max): array
    {
        $limit = $max + self::SCAN_EXTRA;
        $trace = debug_backtrace(DEBUG_BACKTRACE_IGNORE_ARGS, $limit);
        return self::frames($trace, $max, count($trace) < $limit);
    }

    /**
     * The application's frames of a backtrace, at most $max. A frame of
     * debug_backtrace() holds the function called and where it was called
     * from; a site frame is that place and the function it is in, the
     * called function of the next frame. Places without a file (a C
     * extension calling back: Phalcon's events), in the agent's files or
     * under a /vendor/ directory are not the application's. $complete says
     * the trace reaches the script's top level; when it does not, its last
     * place is in a function it does not show, so that place is left out.
     *
     * @param list<array<string, mixed>> $trace as debug_backtrace() returns it
     * @return list<string>
     */
    public static function frames(array $trace, int $max, bool $complete = true): array
    {
        $out = [];
        $n = count($trace);
        for ($i = 0; $i < $n && count($out) < $max; $i++) {
            $file = $trace[$i]['file'] ?? null;
            if (!is_string($file) || str_contains($file, '/vendor/') || self::isAgent($file)) {
                continue;
            }
            if ($i + 1 < $n) {
                $fn = self::function($trace[$i + 1]);
            } elseif ($complete) {
                $fn = self::MAIN;
            } else {
                break;
            }
            $out[] = $file . ':' . (int) ($trace[$i]['line'] ?? 0) . ' ' . $fn;
        }
        return $out;
    }

    /** "Class::method", "function", or MAIN for a file's top level. @param array<string, mixed> $frame */
    private static function function(array $frame): string
    {
        $fn = (string) ($frame['function'] ?? '');
        if ($fn === '' || isset(self::INCLUDES[$fn])) {
            return self::MAIN;
        }
        $class = $frame['class'] ?? '';
        return is_string($class) && $class !== '' ? $class . '::' . $fn : $fn;
    }

    /**
     * A file of the agent: under its src/ directory, or the generated
     * bundle this class may be declared in.
     */
    private static function isAgent(string $file): bool
    {
        if (self::$src === null) {
            self::$src = (basename(__DIR__) === 'src' ? __DIR__ : __DIR__ . '/src') . '/';
        }
        return $file === __FILE__ || str_starts_with($file, self::$src);
    }
}
