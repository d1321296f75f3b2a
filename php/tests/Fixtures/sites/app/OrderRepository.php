<?php

declare(strict_types=1);

namespace BitvilleSiteFixture\App;

use BitvilleSiteFixture\Acme\Db\Gateway;

/** The application's code: the call sites of its statements start here. */
final class OrderRepository
{
    /** The line of each statement, as its call site names it. */
    public const FIND_LINE = 22;
    public const COUNT_LINE = 29;

    public function __construct(private readonly Gateway $db)
    {
    }

    public function find(int $id): array
    {
        return $this->db->fetchAll('SELECT ' . $id);
    }

    /** Two statements from one line of a loop: one site. */
    public function countTwice(): int
    {
        for ($i = 0, $n = 0; $i < 2; $i++) {
            $n += count($this->db->fetchAll('SELECT count(*) FROM (VALUES (1)) v'));
        }
        return $n;
    }
}
