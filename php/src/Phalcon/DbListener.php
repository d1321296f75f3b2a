<?php

declare(strict_types=1);

namespace Bitville\Apm\Phalcon;

use Bitville\Apm\Agent;
use Bitville\Apm\Runtime;

/**
 * Records the statements of a Phalcon database connection through its
 * events manager:
 *
 * ```php
 * $em = new \Phalcon\Events\Manager();
 * $em->attach('db', new \Bitville\Apm\Phalcon\DbListener());  // before the application's db listeners
 * $connection->setEventsManager($em);
 * ```
 *
 * Phalcon fires db:beforeQuery and db:afterQuery around
 * Phalcon\Db\Adapter\Pdo\AbstractPdo::query() and execute(); the statement
 * text is the adapter's getSQLStatement() (with placeholders; the values of
 * getSQLVariables() are not sent). Rows: execute() (INSERT, UPDATE, DELETE,
 * ...) sets affectedRows() before afterQuery; query() does not, so rows are
 * reported only for data-changing statements without RETURNING.
 *
 * The statement's call site (Runtime::site()) is taken in db:beforeQuery,
 * so a statement recorded later (below) keeps its own.
 *
 * A statement that throws never reaches db:afterQuery: it is recorded as
 * failed when the next statement starts or when the request ends, with its
 * duration measured up to then (an upper bound).
 *
 * The listener never returns false (which would cancel the query); Phalcon
 * returns the last listener's value from fire(), so attach it before any
 * listener of the application that cancels queries, or with a higher
 * priority. Phalcon passes the statement to PDO from a local variable, so no
 * sqlcommenter comment can be added through events: use
 * Agent::sqlComment() where the application builds its SQL.
 *
 * Phalcon is a C extension that cannot be installed here; this class is
 * written against its documented API (Phalcon\Db\Adapter\AdapterInterface:
 * getSQLStatement(), getSQLVariables(), getType(); AbstractPdo::affectedRows())
 * and tested with test doubles of it.
 */
final class DbListener
{
    private ?int $startedAt = null;
    private string $pending = '';
    private int $site = -1;
    private ?Runtime $registered = null;

    public function beforeQuery(object $event, object $connection, mixed $data = null): void
    {
        $rt = Agent::current();
        if ($rt === null) {
            return;
        }
        try {
            $this->flush();
            if ($this->registered !== $rt) {
                $this->registered = $rt;
                $rt->beforeEnd([$this, 'flush']);
            }
            $sql = \method_exists($connection, 'getSQLStatement') ? $connection->getSQLStatement() : '';
            $this->pending = \is_string($sql) ? $sql : '';
            $this->site = $this->pending !== '' ? $rt->site() : -1;
            $this->startedAt = \hrtime(true);
        } catch (\Throwable) {
            $this->startedAt = null;
        }
    }

    public function afterQuery(object $event, object $connection, mixed $data = null): void
    {
        $rt = Agent::current();
        if ($rt === null || $this->startedAt === null) {
            return;
        }
        $ns = \hrtime(true) - $this->startedAt;
        $this->startedAt = null;
        if ($this->pending === '') {
            return;
        }
        try {
            $rows = null;
            if (\preg_match('/^\s*(?:INSERT|UPDATE|DELETE|MERGE)\b/i', $this->pending) === 1
                && \stripos($this->pending, 'RETURNING') === false
                && \method_exists($connection, 'affectedRows')) {
                $n = $connection->affectedRows();
                $rows = \is_int($n) ? $n : null;
            }
            $rt->sql($this->pending, $ns, $rows, false, $this->site);
        } catch (\Throwable) {
        }
    }

    /** Records a statement that started but never reached db:afterQuery as failed. */
    public function flush(): void
    {
        if ($this->startedAt === null) {
            return;
        }
        $ns = \hrtime(true) - $this->startedAt;
        $this->startedAt = null;
        if ($this->pending !== '') {
            Agent::current()?->sql($this->pending, $ns, null, true, $this->site);
        }
    }
}
