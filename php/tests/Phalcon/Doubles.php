<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Phalcon;

/*
 * Test doubles of the parts of Phalcon the listeners use, following Phalcon
 * 5's documented API (Phalcon cannot be installed here): the events manager
 * calls $listener->{eventName}($event, $source, $data) and returns the last
 * listener's value; the PDO adapter fires db:beforeQuery / db:afterQuery
 * around query() and execute() and cancels when fire() returns false.
 */

final class Event
{
    public function __construct(public readonly string $type)
    {
    }
}

final class EventsManager
{
    /** @var array<string, list<object>> */
    private array $listeners = [];

    public function attach(string $eventType, object $handler): void
    {
        $this->listeners[$eventType][] = $handler;
    }

    public function fire(string $eventType, object $source, mixed $data = null): mixed
    {
        [$type, $name] = explode(':', $eventType, 2);
        $status = null;
        foreach ($this->listeners[$type] ?? [] as $handler) {
            if (method_exists($handler, $name)) {
                $status = $handler->{$name}(new Event($name), $source, $data);
            }
        }
        return $status;
    }
}

/** Phalcon\Db\Adapter\Pdo\Postgresql, reduced to what the listener touches. */
final class Connection
{
    private string $sqlStatement = '';
    /** @var array<int|string, mixed> */
    private array $sqlVariables = [];
    private int $affectedRows = 0;

    /** @param \Closure(string): int $run the "database": returns affected rows or throws */
    public function __construct(private readonly EventsManager $em, private readonly \Closure $run)
    {
    }

    public function getSQLStatement(): string
    {
        return $this->sqlStatement;
    }

    /** @return array<int|string, mixed> */
    public function getSQLVariables(): array
    {
        return $this->sqlVariables;
    }

    public function getType(): string
    {
        return 'pgsql';
    }

    public function affectedRows(): int
    {
        return $this->affectedRows;
    }

    /** Like AbstractPdo::execute(): affectedRows is set before db:afterQuery. @param array<int|string, mixed> $bind */
    public function execute(string $sql, array $bind = []): bool
    {
        $this->sqlStatement = $sql;
        $this->sqlVariables = $bind;
        if ($this->em->fire('db:beforeQuery', $this) === false) {
            return false;
        }
        $this->affectedRows = ($this->run)($sql);
        $this->em->fire('db:afterQuery', $this);
        return true;
    }

    /** Like AbstractPdo::query(): afterQuery without touching affectedRows. @param array<int|string, mixed> $bind */
    public function query(string $sql, array $bind = []): bool
    {
        $this->sqlStatement = $sql;
        $this->sqlVariables = $bind;
        if ($this->em->fire('db:beforeQuery', $this) === false) {
            return false;
        }
        ($this->run)($sql);
        $this->em->fire('db:afterQuery', $this);
        return true;
    }
}

/** Phalcon\Mvc\Router\Route. */
final class Route
{
    public function __construct(private readonly string $pattern)
    {
    }

    public function getPattern(): string
    {
        return $this->pattern;
    }
}

/** Phalcon\Mvc\Router: handle() fires matchedRoute for candidates, then afterCheckRoutes. */
final class Router
{
    private ?Route $matched = null;

    public function __construct(private readonly EventsManager $em)
    {
    }

    /** @param list<array{Route, bool}> $candidates route and whether its beforeMatch accepts it */
    public function handle(array $candidates): void
    {
        $this->em->fire('router:beforeCheckRoutes', $this);
        foreach ($candidates as [$route, $accepted]) {
            $this->em->fire('router:matchedRoute', $this, $route);
            if ($accepted) {
                $this->matched = $route;
                break;
            }
        }
        if ($this->matched === null) {
            $this->em->fire('router:notMatchedRoute', $this);
        }
        $this->em->fire('router:afterCheckRoutes', $this);
    }

    public function getMatchedRoute(): ?Route
    {
        return $this->matched;
    }
}
