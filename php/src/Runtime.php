<?php

declare(strict_types=1);

namespace Bitville\Apm;

use Bitville\Apm\Profiler\Profiler;
use Bitville\Apm\Profiler\ProfilerFactory;
use Bitville\Apm\Profiler\ProgressTimer;
use Bitville\Apm\Profiler\Timer;
use Bitville\Apm\Profiler\WallProfile;
use Bitville\Apm\Transport\Channel;
use Bitville\Apm\Transport\DropCounter;
use Bitville\Apm\Transport\Spool;
use Bitville\Apm\Transport\Transport;
use Bitville\Apm\Transport\UnixDatagramTransport;

/**
 * One request (or CLI run) being measured: started at prepend time, ended by
 * the last shutdown function. It owns the RequestRecord, the profiler, the
 * progress timer, the error and exception handlers and the channel to the
 * daemon.
 *
 * Every public entry point is guarded: nothing here throws into, prints to,
 * or raises errors in the application.
 */
final class Runtime
{
    /** Fatal error types: the request ended in one when error_get_last() at shutdown is of these. */
    private const FATAL = \E_ERROR | \E_PARSE | \E_CORE_ERROR | \E_COMPILE_ERROR | \E_USER_ERROR | \E_RECOVERABLE_ERROR;

    private const ERROR_TYPES = [
        \E_ERROR => 'E_ERROR', \E_WARNING => 'E_WARNING', \E_PARSE => 'E_PARSE', \E_NOTICE => 'E_NOTICE',
        \E_CORE_ERROR => 'E_CORE_ERROR', \E_CORE_WARNING => 'E_CORE_WARNING', \E_COMPILE_ERROR => 'E_COMPILE_ERROR',
        \E_COMPILE_WARNING => 'E_COMPILE_WARNING', \E_USER_ERROR => 'E_USER_ERROR', \E_USER_WARNING => 'E_USER_WARNING',
        \E_USER_NOTICE => 'E_USER_NOTICE', 2048 => 'E_STRICT', \E_RECOVERABLE_ERROR => 'E_RECOVERABLE_ERROR',
        \E_DEPRECATED => 'E_DEPRECATED', \E_USER_DEPRECATED => 'E_USER_DEPRECATED',
    ];

    private ?Profiler $profiler = null;
    private string $profilerName = 'none';
    /** The progress timer while the request runs. */
    private ?Timer $progress = null;
    private int $seq = 0;
    private bool $started = false;
    /** start_delay_ms: the start message waits for the timer's first tick. */
    private bool $startPending = false;
    private bool $finished = false;
    private bool $handlersInstalled = false;
    /** Milliseconds after the start: the long-request mark (0: passed or off). */
    private int $longAtMs = 0;
    /** The next progress message (0: progress off). */
    private int $progressAtMs = 0;
    /** When the timer ticks next on its own, and its period. */
    private int $tickAtMs = 0;
    private int $timerPeriodMs = 0;

    /** @var callable|null */
    private $previousErrorHandler = null;
    /** @var callable|null */
    private $previousExceptionHandler = null;

    /** Sends the end from a destructor if the end handler never ran. */
    private ?ShutdownGuard $guard = null;

    /** @var list<callable(): void> called before the end message is built (pending Phalcon statements) */
    private array $beforeEnd = [];

    /** CPU seconds (user, sys) when the request started. */
    private float $cpuUser0;
    private float $cpuSys0;

    /**
     * $profilers, $timers and $status replace ProfilerFactory::create(),
     * ProgressTimer::start() and http_response_code(); null (production)
     * means those.
     *
     * @param float $t0 microtime(true) at prepend time
     * @param int $h0 hrtime(true) at prepend time
     * @param (\Closure(string, float, bool, float, bool, float): ?Profiler)|null $profilers
     *        (setting, period in seconds, call graph, excimer_request_rate, sample this request,
     *        real-clock period in seconds)
     * @param (\Closure(float, float, callable(list<string>, ?array<string, mixed>): void): ?Timer)|null $timers
     *        (first tick after, then every, in seconds; the tick)
     * @param (\Closure(): int)|null $status the response status at the end
     */
    public function __construct(
        public readonly Config $config,
        public readonly RequestRecord $record,
        private readonly Channel $channel,
        private readonly Messages $messages,
        private readonly float $t0,
        private readonly int $h0,
        private readonly bool $callGraph = false,
        private readonly bool $excimerDrawn = true,
        private readonly ?\Closure $profilers = null,
        private readonly ?\Closure $timers = null,
        private readonly ?\Closure $status = null,
    ) {
        [$this->cpuUser0, $this->cpuSys0] = self::cpu();
    }

    /**
     * Builds the runtime of the current request from the SAPI's globals.
     * $transport and $sapi replace the daemon socket and PHP_SAPI; the
     * closures are the constructor's (null: production).
     *
     * @param array<string, mixed> $server $_SERVER
     * @param (\Closure(string, float, bool, float, bool, float): ?Profiler)|null $profilers
     * @param (\Closure(float, float, callable(list<string>, ?array<string, mixed>): void): ?Timer)|null $timers
     * @param (\Closure(): int)|null $status
     */
    public static function fromGlobals(
        Config $config,
        array $server,
        ?Transport $transport = null,
        string $sapi = \PHP_SAPI,
        ?\Closure $profilers = null,
        ?\Closure $timers = null,
        ?\Closure $status = null,
    ): self {
        $t0 = \microtime(true);
        $h0 = \hrtime(true);
        $random = \random_bytes(32);
        $pid = \getmypid() ?: 1;
        $cli = $sapi === 'cli' || $sapi === 'phpdbg';

        $started = $server['REQUEST_TIME_FLOAT'] ?? null;
        $started = \is_float($started) && $started <= $t0 && $started > $t0 - 3600 ? $started : $t0;

        $redactor = new Redactor($config->redactKeys, $config->redactPatterns);
        $traceId = '';
        $forced = false;
        if ($cli) {
            $method = 'CLI';
            $argv = $server['argv'] ?? null;
            $script = \is_array($argv) && isset($argv[0]) && \is_string($argv[0]) && $argv[0] !== '' ? $argv[0] : (string) ($server['SCRIPT_NAME'] ?? '-');
            $uri = Text::sanitize($redactor->text($script), Messages::MAX_URI);
            $endpoint = Endpoint::join('CLI', $script);
            $cid = Ids::uuid4(\substr($random, 16));
        } else {
            $method = Endpoint::method((string) ($server['REQUEST_METHOD'] ?? 'GET'));
            $path = Endpoint::path((string) ($server['REQUEST_URI'] ?? '/'));
            $uri = Text::sanitize($redactor->text($path), Messages::MAX_URI);
            $endpoint = Endpoint::join($method, Endpoint::routeWith($config->endpointRules, $path));
            $cid = Ids::incoming($server) ?? Ids::uuid4(\substr($random, 16));
            $traceparent = $server['HTTP_TRACEPARENT'] ?? null;
            $traceId = \is_string($traceparent) ? Ids::traceId($traceparent) ?? '' : '';
            if ($config->forceHeaderSecret !== '') {
                $header = $server['HTTP_X_BITVILLE_PROFILE'] ?? null;
                $forced = \is_string($header) && \hash_equals($config->forceHeaderSecret, $header);
            }
        }
        $host = $config->host !== '' ? $config->host : Text::sanitize((string) \gethostname(), Config::MAX_HOST_BYTES);

        // Positional: these run on every request.
        $record = new RequestRecord(\bin2hex(\substr($random, 0, 16)), $pid, $config->project, $cid, $method, $uri, $endpoint,
            $started, $sapi, $host, $config->pool, $config->sqlMaxStatements, $traceId, $forced,
            // A request that will carry its sites in any case formats them at once.
            $config->slowThresholdMs > 0 && !$forced);

        // The request id's random bytes decide sampling: mt_rand() would
        // move the application's seeded sequence.
        $sampled = $config->sampleRate > 0.0 && \unpack('N', $random)[1] / 4294967296 < $config->sampleRate;

        $drops = new DropCounter($pid);
        // The spool is made only when a send fails.
        $spool = static function () use ($config, $pid, $drops): ?Spool {
            $dir = $config->spoolDirectory();
            return $dir !== '' ? new Spool($dir, $config->spoolMaxBytes, $pid, $drops, $config->spoolDirIsExplicit()) : null;
        };
        $channel = new Channel($transport ?? new UnixDatagramTransport($config->socket), $drops, null, $spool);
        $messages = new Messages($redactor, $config->sqlMaxLength, $config->slowThresholdMs);
        // Excimer profiles excimer_request_rate of the requests, drawn from
        // other random bytes than sample_rate's.
        $rate = $config->excimerRequestRate;
        $drawn = $rate >= 1.0 || ($rate > 0.0 && \unpack('N', $random, 4)[1] / 4294967296 < $rate);
        return new self($config, $record, $channel, $messages, $t0, $h0, $forced || $sampled, $drawn, $profilers, $timers, $status);
    }

    /**
     * Starts measuring: the timer, the start message, the profiler. The
     * profiler and timer factories are the constructor's, by default
     * ProfilerFactory::create() and ProgressTimer::start() when the classes
     * exist.
     *
     * One timer serves every deadline of the request: the delayed start
     * (start_delay_ms), the long-request mark (profile_long_ms) and the
     * progress messages (progress_after_ms, then progress_interval_ms). It
     * first fires at the earliest of them; each tick does what is due and
     * re-arms the timer for the next one if its period would miss it. A
     * request shorter than the earliest deadline pays for that timer only.
     */
    public function start(): void
    {
        if ($this->started) {
            return;
        }
        $this->started = true;
        $after = $this->config->progressAfterMs;
        $delay = $this->config->startDelayMs;
        $long = $this->config->profiler !== 'off' ? $this->config->profileLongMs : 0;
        $this->progressAtMs = $after;
        $this->longAtMs = $long;
        // With start_delay_ms, the start is sent by the timer's first tick,
        // so requests shorter than the delay send one datagram, not two.
        $first = \min($delay > 0 ? $delay : \PHP_INT_MAX, $long > 0 ? $long : \PHP_INT_MAX, $after > 0 && $delay <= 0 ? $after : \PHP_INT_MAX);
        if ($first < \PHP_INT_MAX) {
            try {
                $this->startPending = $delay > 0;
                $this->tickAtMs = $first;
                $this->timerPeriodMs = $after > 0 ? $this->progressIntervalMs() : 86400000;
                // Called directly in production: this runs on every request.
                $t = $this->timers !== null
                    ? ($this->timers)($first / 1000, $this->timerPeriodMs / 1000, [$this, 'onProgress'])
                    : ProgressTimer::start($first / 1000, $this->timerPeriodMs / 1000, [$this, 'onProgress']);
                $this->progress = $t instanceof Timer ? $t : null;
            } catch (\Throwable) {
                $this->progress = null;
            }
            if ($this->progress === null) {
                $this->startPending = false;
            }
        }
        if (!$this->startPending) {
            $this->sendStart();
        }
        // The profiler starts last, so its samples do not include the
        // agent's own start-up work (sending the start, arming the timer).
        try {
            if ($this->config->profiler !== 'off' && ($this->excimerDrawn || $this->callGraph)) {
                $profilers = $this->profilerFactory();
                if ($profilers !== null) {
                    $p = $profilers($this->config->profiler, $this->config->excimerPeriodMs / 1000, $this->callGraph,
                        $this->config->excimerRequestRate, $this->excimerDrawn, $this->config->excimerWallPeriodMs / 1000);
                    if ($p instanceof Profiler) {
                        $p->start();
                        $this->profiler = $p;
                        $this->profilerName = $p->name();
                    }
                }
            }
        } catch (\Throwable) {
            $this->profiler = null;
            $this->profilerName = 'none';
        }
    }

    private function progressIntervalMs(): int
    {
        return $this->config->progressIntervalMs > 0 ? $this->config->progressIntervalMs : $this->config->progressAfterMs;
    }

    /** The constructor's profiler factory, else ProfilerFactory::create() when it loads. */
    private function profilerFactory(): ?\Closure
    {
        return $this->profilers ?? (\class_exists(ProfilerFactory::class) ? ProfilerFactory::create(...) : null);
    }

    /**
     * The long-request mark: from now on the request is profiled at the
     * full rate, on both clocks, whether or not it was drawn.
     *
     * A tick can only run between opcodes, so a request blocked in one call
     * across the mark (a partner API, a lock) gets it when that call
     * returns, $lateSec after the mark. A full-rate profile from the mark
     * on would have given that call those seconds: a request that was not
     * drawn gets them from the tick (the call named by CallSite at the
     * interrupted position $site), a drawn one from its real-clock profile,
     * whose part after the mark then counts unweighted.
     *
     * @param list<string> $stack the tick's stack, outermost first
     * @param array<string, mixed>|null $site the interrupted position
     */
    private function profileLong(float $lateSec, array $stack, ?array $site): void
    {
        try {
            $period = ProfilerFactory::period($this->config->excimerPeriodMs / 1000);
            $late = $lateSec >= $period ? $lateSec : 0.0;
            if ($this->profiler !== null) {
                $this->profiler->fullRate($period, $late);
                return;
            }
            $profilers = $this->profilerFactory();
            if ($profilers === null) {
                return;
            }
            $p = $profilers($this->config->profiler, $period, false, 1.0, true, $period);
            if ($p instanceof Profiler) {
                $p->start();
                $this->profiler = $p;
                $this->profilerName = $p->name();
                $blocked = $late > 0.0 ? WallProfile::blocked($stack, $site) : null;
                if ($blocked !== null) {
                    $p->addWall($blocked[0], $blocked[1], $late);
                }
            }
        } catch (\Throwable) {
        }
    }

    private function sendStart(): void
    {
        try {
            $dropped = $this->channel->dropped();
            $this->channel->send($this->messages->start($this->record, $this->t0, $dropped), $dropped);
        } catch (\Throwable) {
        }
    }

    /**
     * Installs what a real request needs: error and exception handlers that
     * chain to the previous ones, the shutdown function that ends the
     * request, the optional correlation header.
     */
    public function install(): void
    {
        if ($this->handlersInstalled) {
            return;
        }
        $this->handlersInstalled = true;
        try {
            $this->previousErrorHandler = \set_error_handler([$this, 'onError']);
            $this->previousExceptionHandler = \set_exception_handler([$this, 'onException']);
            \register_shutdown_function([$this, 'onShutdown']);
            $this->guard = new ShutdownGuard($this);
            if ($this->config->echoCorrelationHeader && \PHP_SAPI !== 'cli' && !\headers_sent()) {
                \header('X-Correlation-ID: ' . $this->record->cid);
            }
        } catch (\Throwable) {
        }
    }

    /**
     * The error handler: counts the error when error_reporting() includes
     * it (so @-silenced ones are not counted), then returns what the previous
     * handler returns, or false to let PHP's own handler log it as usual.
     */
    public function onError(int $errno, string $errstr, string $errfile = '', int $errline = 0): mixed
    {
        if ((\error_reporting() & $errno) !== 0) {
            try {
                $this->record->addError(self::ERROR_TYPES[$errno] ?? 'E_UNKNOWN', $errstr, $errfile, $errline);
            } catch (\Throwable) {
            }
        }
        if ($this->previousErrorHandler !== null) {
            return ($this->previousErrorHandler)($errno, $errstr, $errfile, $errline);
        }
        return false;
    }

    /**
     * The exception handler: records the uncaught exception, then hands it
     * to the previous handler, or rethrows it, which makes PHP report it
     * exactly as it would without any handler ("PHP Fatal error: Uncaught
     * ...", exit status 255, HTTP 500).
     */
    public function onException(\Throwable $e): void
    {
        try {
            $this->record->addError(\get_class($e), $e->getMessage(), $e->getFile(), $e->getLine());
            $this->record->uncaughtException = true;
        } catch (\Throwable) {
        }
        if ($this->previousExceptionHandler !== null) {
            ($this->previousExceptionHandler)($e);
            return;
        }
        throw $e;
    }

    /**
     * The shutdown function registered at prepend time runs before the
     * application's own: it registers finish() again so that the end is
     * measured after all of them, when the response is complete.
     */
    public function onShutdown(): void
    {
        try {
            \register_shutdown_function([$this, 'finish']);
        } catch (\Throwable) {
            $this->finish(false);
        }
    }

    /**
     * Ends the request: stops the timer and the profiler, finishes the
     * FastCGI response when allowed (so the client does not wait for the
     * agent), and sends the end message. Runs once; a forked child (another
     * pid) sends nothing.
     */
    public function finish(bool $mayFinishRequest = true): void
    {
        if ($this->finished) {
            return;
        }
        $this->finished = true;
        if (\getmypid() !== $this->record->pid) {
            return;
        }
        // Each step on its own: a failing one must not cost the end message.
        try {
            $this->progress?->stop();
        } catch (\Throwable) {
        }
        $this->progress = null;
        try {
            $this->noteFatal(\error_get_last());
        } catch (\Throwable) {
        }
        $status = $this->status !== null ? ($this->status)() : \http_response_code();
        try {
            if ($mayFinishRequest && $this->config->finishRequest && \PHP_SAPI === 'fpm-fcgi' && \function_exists('fastcgi_finish_request')) {
                fastcgi_finish_request();
            }
        } catch (\Throwable) {
        }
        try {
            $this->sendEnd(\is_int($status) ? $status : 0);
        } catch (\Throwable) {
        }
    }

    /** Measures and sends the end message. */
    private function sendEnd(int $status): void
    {
        $elapsed = (\hrtime(true) - $this->h0) / 1e9;
        [$user, $sys] = self::cpu();
        $memPeak = \memory_get_peak_usage(true);
        $profile = null;
        if ($this->profiler !== null) {
            try {
                $profile = $this->profiler->stop();
            } catch (\Throwable) {
                $profile = null;
            }
            $this->profiler = null;
        }
        foreach ($this->beforeEnd as $f) {
            try {
                $f();
            } catch (\Throwable) {
            }
        }
        $dropped = $this->channel->dropped();
        $end = $this->messages->end(
            $this->record,
            $this->t0 + $elapsed,
            $dropped,
            $this->t0 - $this->record->started + $elapsed,
            $user - $this->cpuUser0,
            $sys - $this->cpuSys0,
            $memPeak,
            $status,
            $profile,
            $profile !== null ? $this->profilerName : 'none',
        );
        $this->channel->send($end, $dropped);
    }

    /** A tick earlier than its deadline by less than this still counts (ms). */
    private const TICK_SLACK_MS = 5;

    /**
     * The timer's tick: sends the delayed start, starts the long-request
     * profile, or sends the current stack, memory and CPU of a request that
     * is still running — whatever is due — then re-arms the timer when its
     * period would miss the next deadline.
     *
     * @param list<string> $stack outermost frame first
     * @param array<string, mixed>|null $site the interrupted position (ProgressTimer::site())
     */
    public function onProgress(array $stack, ?array $site = null): void
    {
        if ($this->finished) {
            return;
        }
        try {
            $now = (int) ((\hrtime(true) - $this->h0) / 1e6);
            $handled = false;
            if ($this->startPending) {
                $this->startPending = false;
                $this->sendStart();
                $handled = true;
            }
            if ($this->longAtMs > 0 && $now >= $this->longAtMs - self::TICK_SLACK_MS) {
                $late = \max(0, $now - $this->longAtMs) / 1000;
                $this->longAtMs = 0;
                $this->profileLong($late, $stack, $site);
                $handled = true;
            }
            // A tick nothing else was due for is a progress tick.
            if ($this->progressAtMs > 0 && ($now >= $this->progressAtMs - self::TICK_SLACK_MS || !$handled)) {
                $interval = $this->progressIntervalMs();
                while ($this->progressAtMs <= $now + self::TICK_SLACK_MS) {
                    $this->progressAtMs += $interval;
                }
                $this->sendProgress($stack);
            }
            $this->reschedule($now);
        } catch (\Throwable) {
        }
    }

    /** Re-arms the timer when its own next tick is not the next deadline. */
    private function reschedule(int $now): void
    {
        $next = \min($this->longAtMs > 0 ? $this->longAtMs : \PHP_INT_MAX, $this->progressAtMs > 0 ? $this->progressAtMs : \PHP_INT_MAX);
        $natural = $this->tickAtMs + $this->timerPeriodMs;
        while ($natural <= $now) {
            $natural += $this->timerPeriodMs;
        }
        if ($next === \PHP_INT_MAX || \abs($natural - $next) <= self::TICK_SLACK_MS) {
            $this->tickAtMs = $natural;
            return;
        }
        $this->tickAtMs = \max($next, $now + 1);
        $this->progress?->restart(($this->tickAtMs - $now) / 1000, $this->timerPeriodMs / 1000);
    }

    /** @param list<string> $stack */
    private function sendProgress(array $stack): void
    {
        $elapsed = (\hrtime(true) - $this->h0) / 1e9;
        [$user, $sys] = self::cpu();
        $dropped = $this->channel->dropped();
        $this->channel->send($this->messages->progress(
            $this->record,
            $this->t0 + $elapsed,
            $dropped,
            $this->t0 - $this->record->started + $elapsed,
            ++$this->seq,
            \memory_get_usage(),
            \max(0.0, $user - $this->cpuUser0 + $sys - $this->cpuSys0),
            $stack,
        ), $dropped);
    }

    /**
     * Records a statement; $ns is its duration in nanoseconds, $site its
     * call site from site(), null to take it here. Never throws.
     */
    public function sql(string $sql, int|float $ns, ?int $rows = null, bool $failed = false, ?int $site = null): void
    {
        try {
            // site(), inline: this runs for every statement.
            if ($site === null) {
                $site = -1;
                $frames = $this->config->sqlSiteFrames;
                if ($frames > 0 && !$this->record->sqlFull()) {
                    try {
                        $limit = $frames + SqlSite::SCAN_EXTRA;
                        $trace = \debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS, $limit);
                        $site = $this->record->addTrace($trace, \count($trace) < $limit, $frames);
                    } catch (\Throwable) {
                        $site = -1;
                    }
                }
            }
            $this->record->addSql($sql, $ns / 1e9, $rows, $failed, $site);
        } catch (\Throwable) {
        }
    }

    /**
     * The call site of a statement run here, as a reference for sql()
     * (RequestRecord::addTrace()); -1 when sql_site_frames is 0 or the
     * statement would not be listed. Never throws.
     */
    public function site(): int
    {
        $frames = $this->config->sqlSiteFrames;
        if ($frames <= 0) {
            return -1;
        }
        try {
            if ($this->record->sqlFull()) {
                return -1;
            }
            $limit = $frames + SqlSite::SCAN_EXTRA;
            $trace = \debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS, $limit);
            return $this->record->addTrace($trace, \count($trace) < $limit, $frames);
        } catch (\Throwable) {
            return -1;
        }
    }

    /** $sql with the sqlcommenter comment when sqlcommenter is on. Never throws. */
    public function commentSql(string $sql): string
    {
        if (!$this->config->sqlcommenter) {
            return $sql;
        }
        try {
            return SqlCommenter::apply($sql, $this->record->sqlComment($this->config->sqlcommenterCorrelation));
        } catch (\Throwable) {
            return $sql;
        }
    }

    /** Sets the route: the endpoint becomes "METHOD route". */
    public function setRoute(string $route): void
    {
        try {
            $this->record->setEndpoint(Endpoint::join($this->record->method, $route));
        } catch (\Throwable) {
        }
    }

    /** @param callable(): void $f */
    public function beforeEnd(callable $f): void
    {
        $this->beforeEnd[] = $f;
    }

    public function isFinished(): bool
    {
        return $this->finished;
    }

    /**
     * Notes a fatal error seen by error_get_last() at shutdown. An uncaught
     * exception already recorded by onException() is not listed twice.
     *
     * @param array{type: int, message: string, file: string, line: int}|null $last
     */
    public function noteFatal(?array $last): void
    {
        if ($last === null || ($last['type'] & self::FATAL) === 0) {
            return;
        }
        $this->record->fatal = true;
        $message = $last['message'];
        if (\str_contains($message, 'Allowed memory size of')) {
            // room to build and send the end message
            \ini_set('memory_limit', (string) (\memory_get_usage(true) + 32 * 1024 * 1024));
        }
        if (\str_starts_with($message, 'Uncaught ')) {
            if ($this->record->uncaughtException) {
                return;
            }
            // An exception another handler rethrew: name it after its class.
            $line = (string) \strtok($message, "\n");
            if (\preg_match('/^Uncaught ([A-Za-z_\\\\][A-Za-z0-9_\\\\]*)(?:: (.*?))?(?: in \S+:\d+)?$/s', $line, $m) === 1) {
                $this->record->addError($m[1], $m[2] ?? '', $last['file'], $last['line']);
                return;
            }
        }
        $this->record->addError(self::ERROR_TYPES[$last['type']] ?? 'E_ERROR', $message, $last['file'], $last['line']);
    }

    /** @return array{0: float, 1: float} user and system CPU seconds of this process */
    private static function cpu(): array
    {
        $r = \getrusage();
        if (!\is_array($r)) {
            return [0.0, 0.0];
        }
        return [
            $r['ru_utime.tv_sec'] + $r['ru_utime.tv_usec'] / 1e6,
            $r['ru_stime.tv_sec'] + $r['ru_stime.tv_usec'] / 1e6,
        ];
    }
}
