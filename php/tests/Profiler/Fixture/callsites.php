<?php

// Call sites for CallSiteTest: each "// resume: NAME" marks the line a
// real-clock sample reports after the blocking call of case NAME returned
// (the line of the next opline, as Excimer 1.0.4 on PHP 8.2 reports it).
// Loaded (functions defined, never called) so that user code is known.

declare(strict_types=1);

namespace BitvilleCallSiteFixture;

use Redis as Cache;
use function BitvilleCallSiteFixture\helper as assist;

function helper(int $x): int
{
    return $x;
}

function sessionStart(): void
{
    session_start();
    $started = true; // resume: session
}

function readSocket($s): string
{
    $x = fread($s, 10); // resume: fread
    return (string) $x;
}

function lockFile($fp): void
{
    if (!flock($fp, LOCK_EX)) { // resume: flock
        throw new \RuntimeException('no lock');
    }
}

final class Store
{
    private $redis;

    public function get(string $k): mixed
    {
        return $this->redis->get($k); // resume: redis
    }

    public function connect(): \PDO
    {
        $pdo = new \PDO( // resume: pdo
            'pgsql:host=localhost',
            'user',
        );
        return $pdo;
    }

    public function cached(string $k): mixed
    {
        return Cache::get($k); // resume: static
    }

    public function viaThis(string $k): mixed
    {
        return $this->get($this->normalize(fgets(STDIN))); // resume: this
    }

    private function normalize(string|false $s): string
    {
        return (string) $s;
    }

    public function lastStatement(): void
    {
        usleep(1000);
    } // resume: closing
}

function multiLine($s): int
{
    $n = max(
        1,
        stream_select($r, $w, $e, 10), // resume: multiline-arg
        3
    );
    return $n;
}

function multiLineStatement(): void
{
    usleep(
        1000
    );

    // a comment
    $after = 5; // resume: multiline-statement
}

function sameLine(): void
{
    usleep(1000); $a = 1; // resume: same-line
}

function nested($ch): mixed
{
    $data = json_decode(curl_exec($ch), true); // resume: nested
    return $data;
}

function userOnly(): int
{
    $v = helper(1) + assist(2); // resume: user-only
    return $v;
}

function siblings(): string
{
    $s = fread(STDIN, 1) . fgets(STDIN); // resume: siblings
    return $s;
}

function loop(): void
{
    foreach ([1, 2] as $i) { // resume: loop
        sleep(1);
    }
}

function afterAssignment(): void
{
    $x = 1;
    $y = 2; // resume: no-call
}

function closures(): callable
{
    return function () {
        sleep(1);
        $z = 1; // resume: closure
    };
}

function variable(callable $f): void
{
    $x = $f(); // resume: variable
}
