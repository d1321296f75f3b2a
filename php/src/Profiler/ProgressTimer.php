<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Tells the agent what a long request is doing while it runs: an
 * ExcimerTimer (wall clock) calls back after $afterSec and then every
 * $intervalSec with the request's current stack and the interrupted
 * position (file, line, function, class: what CallSite reads).
 *
 * Excimer runs the callback at the next point where PHP checks for
 * interrupts (function calls, loop back-edges), on the request's own
 * thread, so debug_backtrace() there is the interrupted code's stack. The
 * flip side: a request blocked inside one internal call (a single long SQL
 * statement, sleep()) gets its tick only when that call returns; php-fpm's
 * slowlog covers that case from outside.
 *
 * Keep the returned object: the timer stops when it is destroyed.
 */
final class ProgressTimer implements Timer
{
    private static bool $inTick = false;

    private function __construct(private ?\ExcimerTimer $timer)
    {
    }

    public function __destruct()
    {
        $this->stop();
    }

    /**
     * Calls $tick(list<string> $stackOutermostFirst, ?array $site) after $afterSec and then every $intervalSec while the request runs
     * (ExcimerTimer when the extension is loaded; null otherwise). Never throws; exceptions from $tick are swallowed.
     */
    public static function start(float $afterSec, float $intervalSec, callable $tick): ?ProgressTimer
    {
        if (!\class_exists(\ExcimerTimer::class, false)) {
            return null;
        }
        if (!\is_finite($afterSec) || $afterSec <= 0.0) {
            return null;
        }
        if (!\is_finite($intervalSec) || $intervalSec <= 0.0) {
            $intervalSec = $afterSec;
        }
        try {
            $timer = new \ExcimerTimer();
            $timer->setEventType(\EXCIMER_REAL);
            $timer->setInterval(\max($afterSec, 0.001));
            $timer->setPeriod(\max($intervalSec, 0.001));
            $timer->setCallback(static function () use ($tick): void {
                if (self::$inTick) {
                    return; // a tick that outlasts the interval is not re-entered
                }
                self::$inTick = true;
                try {
                    $trace = \debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS | \DEBUG_BACKTRACE_PROVIDE_OBJECT);
                    $tick(self::fromBacktrace($trace), self::site($trace));
                } catch (\Throwable) {
                    // never into the application
                } finally {
                    self::$inTick = false;
                }
            });
            @$timer->start();
            return new self($timer);
        } catch (\Throwable) {
            return null;
        }
    }

    public function restart(float $afterSec, float $intervalSec): void
    {
        if ($this->timer === null || !\is_finite($afterSec) || !\is_finite($intervalSec)) {
            return;
        }
        try {
            $this->timer->setInterval(\max($afterSec, 0.001));
            $this->timer->setPeriod(\max($intervalSec, 0.001));
            @$this->timer->start(); // a running timer is re-armed
        } catch (\Throwable) {
            // nothing to do
        }
    }

    public function stop(): void
    {
        if ($this->timer === null) {
            return;
        }
        try {
            @$this->timer->stop();
            if (\PHP_SAPI === 'cli') {
                ExcimerExit::guard();
            }
        } catch (\Throwable) {
            // nothing to do
        }
        $this->timer = null;
    }

    /**
     * The interrupted position of a debug_backtrace() taken inside the
     * timer callback: frame 0's file and line, frame 1's function and
     * class; null when unknown.
     *
     * @internal
     * @param array<int,array<string,mixed>> $trace
     * @return array{file: string, line: int, function: string, class: string}|null
     */
    public static function site(array $trace): ?array
    {
        $file = $trace[0]['file'] ?? null;
        $line = $trace[0]['line'] ?? null;
        if (!\is_string($file) || !\is_int($line)) {
            return null;
        }
        $function = $trace[1]['function'] ?? '';
        $class = $trace[1]['class'] ?? '';
        return ['file' => $file, 'line' => $line, 'function' => \is_string($function) ? $function : '', 'class' => \is_string($class) ? $class : ''];
    }

    /**
     * Turns a debug_backtrace() taken inside the timer callback into a stack:
     * frame 0 is the callback itself (its file/line is where the request was
     * interrupted); the last frame's file, when set, is top-level code of the
     * script: `{main}`.
     *
     * @internal
     * @param array<int,array<string,mixed>> $trace
     * @return list<string>
     */
    public static function fromBacktrace(array $trace): array
    {
        $stack = [];
        $n = \count($trace);
        if ($n === 0) {
            return $stack;
        }
        $outer = $trace[$n - 1];
        $file = $outer['file'] ?? null;
        if (\is_string($file) && !Frames::isAgent($file)) {
            $stack[] = Frames::MAIN;
        }
        for ($i = $n - 1; $i >= 1; $i--) {
            $name = self::frameName($trace[$i]);
            if ($name !== null && !Frames::isAgent($name)) {
                $stack[] = Frames::clean($name);
            }
        }
        return Frames::limitProgress($stack);
    }

    /**
     * @param array<string,mixed> $frame
     */
    private static function frameName(array $frame): ?string
    {
        $function = $frame['function'] ?? null;
        if (!\is_string($function) || $function === '') {
            return null;
        }
        if (\str_starts_with($function, '{closure')) {
            $object = $frame['object'] ?? null;
            if ($object instanceof \Closure) {
                try {
                    $r = new \ReflectionFunction($object);
                    $f = $r->getFileName();
                    if (\is_string($f)) {
                        return '{closure:' . $f . '(' . $r->getStartLine() . ')}';
                    }
                } catch (\Throwable) {
                    // fall through to the plain name
                }
            }
            return $function;
        }
        if ($function === 'include' || $function === 'include_once' || $function === 'require' || $function === 'require_once') {
            // The top-level code of an included file: Excimer names it by path.
            $path = $frame['args'][0] ?? null;
            return \is_string($path) ? $path : $function;
        }
        $class = $frame['class'] ?? null;
        return \is_string($class) && $class !== '' ? $class . '::' . $function : $function;
    }
}
