<?php

declare(strict_types=1);

namespace Bitville\Apm\Pdo;

use Bitville\Apm\Agent;

/**
 * A drop-in \PDO (same constructor) whose statements the agent sees: query(),
 * exec(), prepare() + execute() and the transaction calls are timed and
 * recorded with their rows where the driver knows them. A failing statement
 * is recorded as failed and its exception rethrown unchanged; return values
 * and error modes are untouched.
 *
 * On PostgreSQL connections (driver pgsql) with sqlcommenter on, statements
 * get the endpoint comment (SqlCommenter) before they are sent, and the text
 * recorded is the text sent.
 *
 * Prepared statements are traced through PDO::ATTR_STATEMENT_CLASS
 * (TracedStatement). PDO does not allow that attribute on persistent
 * connections, and an application may set its own statement class: in both
 * cases query() and exec() are still traced, prepare() + execute() are not.
 * Connections made while the agent does not measure (disabled, daemon down)
 * keep PDO's own statement class, so they cost nothing per statement.
 *
 * Not final on purpose: applications that already subclass \PDO can extend
 * this class instead.
 */
class TracedPdo extends \PDO
{
    private readonly bool $pgsql;

    /** @param array<int, mixed>|null $options */
    public function __construct(string $dsn, ?string $username = null, ?string $password = null, ?array $options = null)
    {
        // Statements are timed by TracedStatement only while the agent
        // measures this request (it starts before any application code and
        // never later): otherwise they stay plain PDOStatements, which cost
        // nothing over PDO.
        if (Agent::current() !== null && empty($options[\PDO::ATTR_PERSISTENT]) && !isset($options[\PDO::ATTR_STATEMENT_CLASS])) {
            $options ??= [];
            $options[\PDO::ATTR_STATEMENT_CLASS] = [TracedStatement::class];
        }
        parent::__construct($dsn, $username, $password, $options);
        $driver = null;
        try {
            $driver = $this->getAttribute(\PDO::ATTR_DRIVER_NAME);
        } catch (\Throwable) {
        }
        $this->pgsql = $driver === 'pgsql';
    }

    public function exec(string $statement): int|false
    {
        $rt = Agent::current();
        if ($rt === null) {
            return parent::exec($statement);
        }
        if ($this->pgsql) {
            $statement = $rt->commentSql($statement);
        }
        $t = \hrtime(true);
        try {
            $n = parent::exec($statement);
        } catch (\Throwable $e) {
            $rt->sql($statement, \hrtime(true) - $t, null, true);
            throw $e;
        }
        $rt->sql($statement, \hrtime(true) - $t, \is_int($n) ? $n : null, $n === false);
        return $n;
    }

    public function query(string $query, ?int $fetchMode = null, mixed ...$fetchModeArgs): \PDOStatement|false
    {
        $rt = Agent::current();
        if ($rt === null) {
            return $fetchMode === null ? parent::query($query) : parent::query($query, $fetchMode, ...$fetchModeArgs);
        }
        if ($this->pgsql) {
            $query = $rt->commentSql($query);
        }
        $t = \hrtime(true);
        try {
            $st = $fetchMode === null ? parent::query($query) : parent::query($query, $fetchMode, ...$fetchModeArgs);
        } catch (\Throwable $e) {
            $rt->sql($query, \hrtime(true) - $t, null, true);
            throw $e;
        }
        $ns = \hrtime(true) - $t;
        $rows = null;
        if ($st instanceof \PDOStatement) {
            try {
                $rows = $st->rowCount();
            } catch (\Throwable) {
            }
        }
        $rt->sql($query, $ns, $rows, $st === false);
        return $st;
    }

    /** @param array<int, mixed> $options */
    public function prepare(string $query, array $options = []): \PDOStatement|false
    {
        $rt = Agent::current();
        if ($rt === null) {
            return parent::prepare($query, $options);
        }
        if ($this->pgsql) {
            $query = $rt->commentSql($query);
        }
        $t = \hrtime(true);
        try {
            $st = parent::prepare($query, $options);
        } catch (\Throwable $e) {
            // a statement that fails to prepare never executes: record it here
            $rt->sql($query, \hrtime(true) - $t, null, true);
            throw $e;
        }
        if ($st === false) {
            $rt->sql($query, \hrtime(true) - $t, null, true);
        }
        return $st;
    }

    public function beginTransaction(): bool
    {
        $rt = Agent::current();
        if ($rt === null) {
            return parent::beginTransaction();
        }
        $t = \hrtime(true);
        try {
            $ok = parent::beginTransaction();
        } catch (\Throwable $e) {
            $rt->sql('BEGIN', \hrtime(true) - $t, null, true);
            throw $e;
        }
        $rt->sql('BEGIN', \hrtime(true) - $t, null, !$ok);
        return $ok;
    }

    public function commit(): bool
    {
        $rt = Agent::current();
        if ($rt === null) {
            return parent::commit();
        }
        $t = \hrtime(true);
        try {
            $ok = parent::commit();
        } catch (\Throwable $e) {
            $rt->sql('COMMIT', \hrtime(true) - $t, null, true);
            throw $e;
        }
        $rt->sql('COMMIT', \hrtime(true) - $t, null, !$ok);
        return $ok;
    }

    public function rollBack(): bool
    {
        $rt = Agent::current();
        if ($rt === null) {
            return parent::rollBack();
        }
        $t = \hrtime(true);
        try {
            $ok = parent::rollBack();
        } catch (\Throwable $e) {
            $rt->sql('ROLLBACK', \hrtime(true) - $t, null, true);
            throw $e;
        }
        $rt->sql('ROLLBACK', \hrtime(true) - $t, null, !$ok);
        return $ok;
    }
}
