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

    /** @var list<array{0: string, 1: float, 2: ?int, 3: bool}> statement text, seconds, rows, failed */
    private array $sql = [];
    private int $sqlCount = 0;
    private int $sqlDropped = 0;

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

    /** Records one statement; past the per-request cap it is only counted. */
    public function addSql(string $sql, float $seconds, ?int $rows = null, bool $failed = false): void
    {
        if ($this->sqlCount >= $this->sqlMax) {
            $this->sqlDropped++;
            return;
        }
        $this->sql[] = [$sql, $seconds, $rows, $failed];
        $this->sqlCount++;
    }

    /** Records one PHP error or uncaught exception; past the cap it is only counted. */
    public function addError(string $type, string $message, string $file, int $line): void
    {
        $this->errorCounts[$type] = ($this->errorCounts[$type] ?? 0) + 1;
        if (count($this->errors) >= self::MAX_ERRORS) {
            $this->errorsDropped++;
            return;
        }
        $this->errors[] = [$type, $message, $file, $line];
    }

    /** @return list<array{0: string, 1: float, 2: ?int, 3: bool}> */
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
}
