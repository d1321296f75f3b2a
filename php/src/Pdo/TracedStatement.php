<?php

declare(strict_types=1);

namespace Bitville\Apm\Pdo;

use Bitville\Apm\Agent;

/**
 * The statement class of TracedPdo: execute() is timed and recorded with
 * the statement's text (as prepared, so with the sqlcommenter comment) and
 * rowCount(). Failures are recorded and rethrown unchanged.
 *
 * Not final: PDO instantiates it itself, and applications that extend
 * TracedPdo may extend it too.
 */
class TracedStatement extends \PDOStatement
{
    // No constructor: PDO would call it for every statement it prepares
    // (PDO accepts a statement class without one, or with a non-public one).

    /** @param array<int|string, mixed>|null $params */
    public function execute(?array $params = null): bool
    {
        $rt = Agent::current();
        if ($rt === null) {
            return parent::execute($params);
        }
        $t = \hrtime(true);
        try {
            $ok = parent::execute($params);
        } catch (\Throwable $e) {
            $rt->sql($this->queryString, \hrtime(true) - $t, null, true);
            throw $e;
        }
        $ns = \hrtime(true) - $t;
        $rows = null;
        if ($ok) {
            try {
                $rows = $this->rowCount();
            } catch (\Throwable) {
            }
        }
        $rt->sql($this->queryString, $ns, $rows, !$ok);
        return $ok;
    }
}
