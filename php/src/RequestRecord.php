<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * What the agent knows about one request: its identity, fixed at start, and
 * what happens while it runs (SQL statements, errors). Recording is cheap:
 * texts are stored raw and redacted, cut and sanitized once, when the end
 * message is built (Messages::end()).
 */
final class RequestRecord
{
    /** The daemon's cap on errors per end message. */
    public const MAX_ERRORS = 50;

    /** @var list<array{0: string, 1: float, 2: ?int, 3: bool, 4: int}> statement text, seconds, rows, failed, site (-1: none) */
    private array $sql = [];
    private int $sqlCount = 0;
    private int $sqlDropped = 0;

    /** @var list<list<string>> call sites of the statements (SqlSite), each once */
    private array $sites = [];
    /** @var array<string, int> index in $sites by the site's frames joined */
    private array $siteIndex = [];

    /**
     * Raw backtraces held, not yet formatted, at most this many a request
     * (about 5 KB each at the deepest scan, so ≤ 330 KB); further
     * statements' sites are formatted at once.
     */
    public const MAX_DEFERRED_SITES = 64;
    /** The site reference of the first held backtrace; the k-th is DEFERRED - k. */
    private const DEFERRED = -2;
    /** @var list<array{0: list<array<string, mixed>>, 1: bool}|null> held backtraces and whether each is complete; null once formatted */
    private array $deferred = [];
    /** sql_site_frames, for the held backtraces */
    private int $siteFrames = 0;

    /** @var list<array{0: string, 1: string, 2: string, 3: int}> type, message, file, line */
    private array $errors = [];
    private int $errorsDropped = 0;

    /** @var array<string, int> errors by type, including those past the cap */
    private array $errorCounts = [];

    /** The request ended in a fatal error (or an uncaught exception). */
    public bool $fatal = false;

    /** An uncaught exception was recorded by the exception handler. */
    public bool $uncaughtException = false;

    /** The CLI exit status when known. */
    public ?int $exit = null;

    /** The current endpoint, "METHOD route"; changes when the route becomes known. */
    public string $endpoint;

    /** The sqlcommenter comment for the current endpoint, built on first use. */
    private ?string $sqlComment = null;

    public function __construct(
        public readonly string $id,
        public readonly int $pid,
        public readonly string $project,
        public readonly string $cid,
        public readonly string $method,
        public readonly string $uri,
        string $endpoint,
        public readonly float $started,
        public readonly string $sapi = '',
        public readonly string $host = '',
        public readonly string $pool = '',
        private readonly int $sqlMax = Config::MAX_SQL_STATEMENTS,
        /** The W3C trace id of a valid incoming traceparent, '' without one. */
        public readonly string $traceId = '',
        /** The request carried the profile header (force_header_secret). */
        public readonly bool $forced = false,
        /**
         * Call sites are formatted only if the end message will carry them
         * (Messages::end(): a slow, failed or forced request): until then a
         * statement's backtrace is held as it is (addTrace()).
         */
        private readonly bool $deferSites = false,
    ) {
        $this->endpoint = $endpoint;
    }

    public function setEndpoint(string $endpoint): void
    {
        if ($endpoint !== $this->endpoint) {
            $this->endpoint = $endpoint;
            $this->sqlComment = null;
        }
    }

    /**
     * Records one statement, run by the code of $site (addSite()'s index or
     * addTrace()'s reference; -1: unknown); past the per-request cap it is
     * only counted.
     */
    public function addSql(string $sql, float $seconds, ?int $rows = null, bool $failed = false, int $site = -1): void
    {
        if ($this->sqlCount >= $this->sqlMax) {
            $this->sqlDropped++;
            return;
        }
        $this->sql[] = [$sql, $seconds, $rows, $failed, $site];
        $this->sqlCount++;
    }

    /** True when further statements are only counted: their call sites are not needed. */
    public function sqlFull(): bool
    {
        return $this->sqlCount >= $this->sqlMax;
    }

    /**
     * The index of a call site in the request's table, added when new; -1
     * when the table is full (Messages::MAX_SITES) or $frames is empty.
     *
     * @param list<string> $frames innermost first
     */
    public function addSite(array $frames): int
    {
        if ($frames === []) {
            return -1;
        }
        $key = \implode("\n", $frames);
        if (isset($this->siteIndex[$key])) {
            return $this->siteIndex[$key];
        }
        if (\count($this->sites) >= Messages::MAX_SITES) {
            return -1;
        }
        $this->sites[] = $frames;
        return $this->siteIndex[$key] = \count($this->sites) - 1;
    }

    /**
     * A statement's call site from its debug_backtrace() (SqlSite::frames()
     * with $max and $complete), as a reference for addSql(): the site's
     * index, formatted now, or when the record defers sites and holds fewer
     * than MAX_DEFERRED_SITES, the backtrace held for sites() to format.
     *
     * @param list<array<string, mixed>> $trace
     */
    public function addTrace(array $trace, bool $complete, int $max): int
    {
        if ($this->deferSites && \count($this->deferred) < self::MAX_DEFERRED_SITES) {
            $this->siteFrames = $max;
            $this->deferred[] = [$trace, $complete];
            return self::DEFERRED - \count($this->deferred) + 1;
        }
        return $this->addSite(SqlSite::frames($trace, $max, $complete));
    }

    /**
     * The call sites, the held backtraces formatted first (which sets the
     * statements' references to their indexes).
     *
     * @return list<list<string>>
     */
    public function sites(): array
    {
        // The site index of each backtrace formatted now: statements that
        // still refer to a held one refer to one of these (earlier calls
        // rewrote the rest).
        $formatted = [];
        foreach ($this->deferred as $k => $d) {
            if ($d === null) {
                continue;
            }
            $this->deferred[$k] = null;
            try {
                $formatted[$k] = $this->addSite(SqlSite::frames($d[0], $this->siteFrames, $d[1]));
            } catch (\Throwable) {
                $formatted[$k] = -1;
            }
        }
        if ($formatted !== []) {
            foreach ($this->sql as $i => $s) {
                if ($s[4] <= self::DEFERRED) {
                    $this->sql[$i][4] = $formatted[self::DEFERRED - $s[4]] ?? -1;
                }
            }
        }
        return $this->sites;
    }

    /** Records one PHP error or uncaught exception; past the cap it is only counted. */
    public function addError(string $type, string $message, string $file, int $line): void
    {
        $this->errorCounts[$type] = ($this->errorCounts[$type] ?? 0) + 1;
        if (\count($this->errors) >= self::MAX_ERRORS) {
            $this->errorsDropped++;
            return;
        }
        $this->errors[] = [$type, $message, $file, $line];
    }

    /**
     * The statements; a site below -1 refers to a held backtrace until
     * sites() has formatted it.
     *
     * @return list<array{0: string, 1: float, 2: ?int, 3: bool, 4: int}>
     */
    public function sql(): array
    {
        return $this->sql;
    }

    public function sqlDropped(): int
    {
        return $this->sqlDropped;
    }

    /** @return list<array{0: string, 1: string, 2: string, 3: int}> */
    public function errors(): array
    {
        return $this->errors;
    }

    public function errorsDropped(): int
    {
        return $this->errorsDropped;
    }

    /** @return array<string, int> */
    public function errorCounts(): array
    {
        return $this->errorCounts;
    }

    /** The sqlcommenter comment for the current endpoint (and correlation id when asked). */
    public function sqlComment(bool $withCorrelation): string
    {
        return $this->sqlComment ??= SqlCommenter::comment($this->endpoint, $withCorrelation ? $this->cid : null);
    }

    /**
     * The sqlcommenter comment statements of the current endpoint were
     * given, '' when none was built (statements of an earlier endpoint
     * carry another).
     */
    public function appendedComment(): string
    {
        return $this->sqlComment ?? '';
    }
}
