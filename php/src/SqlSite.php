<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * The code that ran a statement: the first frames of the application on the
 * stack, innermost first, each "file:line function" (docs/protocol.md,
 * `sites`).
 *
 * One debug_backtrace() per statement (Runtime::sql(), Runtime::site()),
 * without arguments and bounded: the frames kept plus SCAN_EXTRA, room for
 * the agent's own frames (three or four: Runtime's, then TracedPdo's,
 * TracedStatement's, SqlSpan's, Agent's or the Phalcon listener's) and for
 * a database library's between the application and the driver (Phalcon's
 * ORM: five to seven C frames). An application frame deeper than that is
 * not found; the site then has fewer frames, or none. The backtrace is
 * formatted here only for a request whose end message carries its sites
 * (RequestRecord::addTrace()).
 */
final class SqlSite
{
    /** Frames read beyond the ones kept (see the class comment). */
    public const SCAN_EXTRA = 24;

    /** The function of code outside any function, and of a file's top level. */
    private const MAIN = '{main}';

    /** The language constructs that run a file's top-level code. */
    private const INCLUDES = ['include' => true, 'include_once' => true, 'require' => true, 'require_once' => true];

    /**
     * Per request, for its statements to come: whether a file is the
     * application's, and each place formatted, by file, line and the
     * function it is in (class and name: a trait's line is in the class
     * that uses it). A statement then costs lookups, not string building.
     * Both are bounded by the code's size; MAX_FILES bounds them for
     * eval()'d or generated code too.
     *
     * @var array<string, bool>
     */
    private static array $application = [];
    /** @var array<string, array<int, array<string, array<string, string>>>> */
    private static array $places = [];
    /** Files known; both tables start afresh past it. */
    private const MAX_FILES = 2000;

    private function __construct()
    {
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
        if (\count(self::$application) > self::MAX_FILES) {
            self::$application = [];
            self::$places = [];
        }
        // One loop with no helper calls: it runs for every statement.
        $out = [];
        $kept = 0;
        foreach ($trace as $i => $frame) {
            if ($kept >= $max) {
                break;
            }
            $file = $frame['file'] ?? '';
            if ($file === '') {
                continue;
            }
            $application = self::$application[$file] ?? null;
            if ($application === null) {
                // Not the agent's (its src/ directory, or the generated
                // bundle this class may be declared in) and not a
                // library's (under /vendor/).
                $src = (\basename(__DIR__) === 'src' ? __DIR__ : __DIR__ . '/src') . '/';
                $application = self::$application[$file] = !\str_contains($file, '/vendor/') && !\str_starts_with($file, $src) && $file !== __FILE__;
            }
            if (!$application) {
                continue;
            }
            $line = $frame['line'] ?? 0;
            $caller = $trace[$i + 1] ?? null;
            if ($caller === null && !$complete) {
                break;
            }
            $fn = $caller['function'] ?? '';
            $class = $caller['class'] ?? '';
            $place = self::$places[$file][$line][$class][$fn] ?? null;
            if ($place === null) {
                $name = $caller === null || $fn === '' || isset(self::INCLUDES[$fn]) ? self::MAIN : ($class !== '' ? $class . '::' . $fn : $fn);
                $place = self::$places[$file][$line][$class][$fn] = $file . ':' . $line . ' ' . $name;
            }
            $out[] = $place;
            $kept++;
        }
        return $out;
    }
}
