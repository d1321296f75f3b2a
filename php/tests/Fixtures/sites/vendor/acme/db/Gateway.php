<?php

declare(strict_types=1);

namespace BitvilleSiteFixture\Acme\Db;

/** A database library installed by Composer: its frames are not the application's. */
final class Gateway
{
    public function __construct(private readonly \PDO $pdo)
    {
    }

    /** @return list<array<int, mixed>> */
    public function fetchAll(string $sql): array
    {
        return $this->run($sql)->fetchAll(\PDO::FETCH_NUM);
    }

    private function run(string $sql): \PDOStatement
    {
        $st = $this->pdo->prepare($sql);
        $st->execute();
        return $st;
    }
}
