<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * The application's interface to the agent. Every method is safe to call
 * whether or not the agent runs (disabled, not configured, daemon down): it
 * then does nothing and returns null or its input, and it never throws.
 *
 * ```php
 * \Bitville\Apm\Agent::setEndpoint('/orders/{id}');   // endpoint "GET /orders/{id}"
 * $cid = \Bitville\Apm\Agent::correlationId();        // for logs and outgoing calls
 * \Bitville\Apm\Agent::recordSql($sql, 0.012, 3);     // a statement run by other means than PDO
 * ```
 */
final class Agent
{
    private static ?Runtime $runtime = null;
    private static bool $booted = false;

    private function __construct()
    {
    }

    /**
     * Called once by bootstrap.php: reads the configuration and, when the
     * agent is enabled, starts measuring the request. A broken configuration
     * is logged in one line (ErrorLog) and leaves the agent disabled. When
     * the daemon's socket does not exist and no spool_dir is configured,
     * nothing is measured: nobody would receive it.
     *
     * Never throws: anything unexpected is logged the same way and disables
     * the agent for this request.
     */
    public static function boot(): void
    {
        if (self::$booted) {
            return;
        }
        self::$booted = true;
        try {
            self::start(Config::load($_SERVER), $_SERVER);
        } catch (ConfigException $e) {
            self::$runtime = null;
            ErrorLog::configError($e->getMessage());
        } catch (\Throwable $e) {
            self::$runtime = null;
            ErrorLog::internalError($e);
        }
    }

    /**
     * @param array<string, mixed> $server
     */
    private static function start(Config $config, array $server): void
    {
        // Without the socket nobody would receive what is measured; only an
        // explicitly configured spool is written to then (the derived one
        // exists only where a daemon created it).
        if (!$config->enabled || (!$config->spoolDirIsExplicit() && !\file_exists($config->socket))) {
            return;
        }
        $runtime = Runtime::fromGlobals($config, $server);
        self::$runtime = $runtime;
        $runtime->install();
        $runtime->start();
    }

    /** The running request's runtime, or null when the agent is not measuring. @internal */
    public static function current(): ?Runtime
    {
        return self::$runtime;
    }

    /** Replaces the current runtime (tests, embedding). @internal */
    public static function setRuntime(?Runtime $runtime): void
    {
        self::$runtime = $runtime;
    }

    /** The correlation id of this request (X-Correlation-ID, traceparent or a fresh UUIDv4), null when disabled. */
    public static function correlationId(): ?string
    {
        return self::$runtime?->record->cid;
    }

    /** The request id the daemon knows this request by (32 hex characters), null when disabled. */
    public static function requestId(): ?string
    {
        return self::$runtime?->record->id;
    }

    /** The endpoint so far ("GET /orders/{id}"), null when disabled. */
    public static function endpoint(): ?string
    {
        return self::$runtime?->record->endpoint;
    }

    /**
     * Names the request after its route pattern, e.g. "/orders/{id}"; the
     * agent adds the method: "GET /orders/{id}" ("CLI ..." for scripts).
     */
    public static function setEndpoint(string $route): void
    {
        self::$runtime?->setRoute($route);
    }

    /** Records a statement run by other means than TracedPdo or the Phalcon listener. */
    public static function recordSql(string $sql, float $seconds, ?int $rows = null, bool $failed = false): void
    {
        self::$runtime?->sql($sql, $seconds * 1e9, $rows, $failed);
    }

    /** Starts timing a statement; call stop() on the span when it is done. */
    public static function startSql(string $sql): SqlSpan
    {
        return new SqlSpan(self::$runtime, $sql);
    }

    /**
     * $sql with this request's sqlcommenter comment appended (when
     * sqlcommenter is on and the agent runs), for statements sent to
     * PostgreSQL by other means than TracedPdo.
     */
    public static function sqlComment(string $sql): string
    {
        return self::$runtime?->commentSql($sql) ?? $sql;
    }

    /** Sets the exit status a CLI script reports in `exit` (PHP gives shutdown code no way to read it). */
    public static function setExitCode(int $code): void
    {
        if (self::$runtime !== null) {
            self::$runtime->record->exit = $code;
        }
    }
}
