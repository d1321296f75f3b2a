<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\CallGraph;
use Bitville\Apm\Profiler\Frames;
use PHPUnit\Framework\TestCase;

final class CallGraphTest extends TestCase
{
    /**
     * @param list<array{n:string,self:float,incl:float,calls:int}> $fn
     * @return array<string,array{n:string,self:float,incl:float,calls:int}>
     */
    private static function byName(array $fn): array
    {
        $out = [];
        foreach ($fn as $f) {
            $out[$f['n']] = $f;
        }
        return $out;
    }

    public static function notInternal(string $name): bool
    {
        return false;
    }

    public function testEdgesReduceToSelfInclusiveAndCalls(): void
    {
        // µs; top-level calls have no "==>" (tideways on PHP 8 when enabled inside a function)
        $data = [
            'main()' => ['ct' => 1, 'wt' => 0],
            'App\\Kernel::handle' => ['ct' => 1, 'wt' => 9000],
            'App\\Kernel::handle==>App\\Orders::show' => ['ct' => 1, 'wt' => 8000],
            'App\\Orders::show==>PDOStatement::execute' => ['ct' => 3, 'wt' => 5000],
            'App\\Orders::show==>App\\Money::format' => ['ct' => 20, 'wt' => 1000],
            'App\\Money::format==>number_format' => ['ct' => 20, 'wt' => 400],
        ];
        $fn = self::byName(CallGraph::reduce($data, 0.0100, [], [self::class, 'notInternal']));

        self::assertEqualsWithDelta(0.0050, $fn['PDOStatement::execute']['self'], 1e-12);
        self::assertSame(3, $fn['PDOStatement::execute']['calls']);
        self::assertEqualsWithDelta(0.0020, $fn['App\\Orders::show']['self'], 1e-12);
        self::assertEqualsWithDelta(0.0080, $fn['App\\Orders::show']['incl'], 1e-12);
        self::assertEqualsWithDelta(0.0006, $fn['App\\Money::format']['self'], 1e-12);
        self::assertSame(20, $fn['App\\Money::format']['calls']);
        self::assertEqualsWithDelta(0.0010, $fn['App\\Kernel::handle']['self'], 1e-12);
        // {main}: the profiled 10 ms, of which 9 ms in calls
        self::assertEqualsWithDelta(0.0100, $fn[Frames::MAIN]['incl'], 1e-12);
        self::assertEqualsWithDelta(0.0010, $fn[Frames::MAIN]['self'], 1e-12);
        self::assertArrayNotHasKey('main()', $fn);
        $this->assertInvariants(CallGraph::reduce($data, 0.0100, [], [self::class, 'notInternal']));
    }

    public function testRecursionCountsInclusiveTimeOnceAndEveryCall(): void
    {
        // rec(3): rec ==> rec@1 ==> rec@2 ==> rec@3, each burns 1 ms itself
        $data = [
            'App\\rec' => ['ct' => 1, 'wt' => 4000],
            'App\\rec==>App\\rec@1' => ['ct' => 1, 'wt' => 3000],
            'App\\rec@1==>App\\rec@2' => ['ct' => 1, 'wt' => 2000],
            'App\\rec@2==>App\\rec@3' => ['ct' => 1, 'wt' => 1000],
            // indirect: a ==> b ==> a@1
            'App\\a' => ['ct' => 1, 'wt' => 3000],
            'App\\a==>App\\b' => ['ct' => 1, 'wt' => 2000],
            'App\\b==>App\\a@1' => ['ct' => 1, 'wt' => 1000],
        ];
        $fn = self::byName(CallGraph::reduce($data, 0.0, [], [self::class, 'notInternal']));
        self::assertEqualsWithDelta(0.004, $fn['App\\rec']['incl'], 1e-12);
        self::assertEqualsWithDelta(0.004, $fn['App\\rec']['self'], 1e-12);
        self::assertSame(4, $fn['App\\rec']['calls']);
        self::assertEqualsWithDelta(0.003, $fn['App\\a']['incl'], 1e-12);
        self::assertEqualsWithDelta(0.002, $fn['App\\a']['self'], 1e-12);
        self::assertSame(2, $fn['App\\a']['calls']);
        self::assertEqualsWithDelta(0.001, $fn['App\\b']['self'], 1e-12);
        // without a measured wall time {main} is the sum of its calls
        self::assertEqualsWithDelta(0.007, $fn[Frames::MAIN]['incl'], 1e-12);
        self::assertEqualsWithDelta(0.0, $fn[Frames::MAIN]['self'], 1e-12);
    }

    public function testInternalFunctionsReportedTwiceCountOnce(): void
    {
        // PHP 8 + tideways/xhprof: each internal call shows up as X==>X@1
        $data = [
            'App\\burn' => ['ct' => 1, 'wt' => 10000],
            'App\\burn==>hrtime' => ['ct' => 500, 'wt' => 1000],
            'hrtime==>hrtime@1' => ['ct' => 500, 'wt' => 400],
            'App\\burn==>array_map' => ['ct' => 1, 'wt' => 3000],
            'array_map==>array_map@1' => ['ct' => 1, 'wt' => 2900],
            'array_map@1==>{closure}' => ['ct' => 2, 'wt' => 2800],
            // a user function calling itself directly is real recursion
            'App\\burn==>App\\self' => ['ct' => 1, 'wt' => 200],
            'App\\self==>App\\self@1' => ['ct' => 1, 'wt' => 100],
        ];
        $internal = static fn (string $n): bool => \in_array($n, ['hrtime', 'array_map'], true);
        $fn = self::byName(CallGraph::reduce($data, 0.0, [], $internal));
        self::assertSame(500, $fn['hrtime']['calls']);
        self::assertEqualsWithDelta(0.001, $fn['hrtime']['incl'], 1e-12);
        self::assertEqualsWithDelta(0.001, $fn['hrtime']['self'], 1e-12);
        self::assertSame(1, $fn['array_map']['calls']);
        self::assertEqualsWithDelta(0.0002, $fn['array_map']['self'], 1e-12);
        self::assertEqualsWithDelta(0.003, $fn['array_map']['incl'], 1e-12);
        self::assertSame(2, $fn['{closure}']['calls']);
        self::assertSame(2, $fn['App\\self']['calls']);
        self::assertEqualsWithDelta(0.0058, $fn['App\\burn']['self'], 1e-12);
    }

    public function testTheRealInternalCheck(): void
    {
        self::assertTrue(CallGraph::isInternalFunction('strlen'));
        self::assertTrue(CallGraph::isInternalFunction('PDO::query'));
        self::assertFalse(CallGraph::isInternalFunction('BitvilleProfilerFixture\\burnCpu'));
        self::assertFalse(CallGraph::isInternalFunction('No\\Such\\Klass::method'));
        self::assertFalse(CallGraph::isInternalFunction('no_such_function_anywhere'));
        self::assertFalse(CallGraph::isInternalFunction('::'));
    }

    public function testAgentWrappersAreTransparentAndTheShutdownPathIsDropped(): void
    {
        $data = [
            // the application's query through the agent's PDO wrapper
            'App\\Repo::find' => ['ct' => 1, 'wt' => 6000],
            'App\\Repo::find==>Bitville\\Apm\\Pdo\\TracedPdo::query' => ['ct' => 2, 'wt' => 5000],
            'Bitville\\Apm\\Pdo\\TracedPdo::query==>PDO::query' => ['ct' => 2, 'wt' => 4000],
            'Bitville\\Apm\\Pdo\\TracedPdo::query==>Bitville\\Apm\\Agent::recordSql' => ['ct' => 2, 'wt' => 600],
            'Bitville\\Apm\\Agent::recordSql==>hrtime' => ['ct' => 2, 'wt' => 100],
            // the agent's TracedPdo built at top level: transparent too
            'Bitville\\Apm\\Pdo\\TracedPdo::__construct' => ['ct' => 1, 'wt' => 2000],
            'Bitville\\Apm\\Pdo\\TracedPdo::__construct==>PDO::__construct' => ['ct' => 1, 'wt' => 1900],
            // the agent's shutdown function, up to the profiler's stop()
            'Bitville\\Apm\\Agent::shutdown' => ['ct' => 1, 'wt' => 3000],
            'Bitville\\Apm\\Agent::shutdown==>json_encode' => ['ct' => 1, 'wt' => 2500],
            'Bitville\\Apm\\Agent::shutdown==>Bitville\\Apm\\Profiler\\CallGraphProfiler::stop' => ['ct' => 1, 'wt' => 10],
        ];
        $lifecycle = ['Bitville\\Apm\\Agent::shutdown' => true, 'Bitville\\Apm\\Profiler\\CallGraphProfiler::stop' => true];
        $list = CallGraph::reduce($data, 0.0120, $lifecycle, [self::class, 'notInternal']);
        $fn = self::byName($list);

        foreach ($list as $f) {
            self::assertFalse(Frames::isAgent($f['n']), $f['n']);
        }
        self::assertArrayNotHasKey('json_encode', $fn, 'reached only from the shutdown path');
        self::assertEqualsWithDelta(0.0040, $fn['PDO::query']['self'], 1e-12);
        self::assertSame(2, $fn['PDO::query']['calls']);
        self::assertEqualsWithDelta(0.0001, $fn['hrtime']['self'], 1e-12);
        // Repo::find: 1 ms of its own + TracedPdo::query's 0.4 ms + recordSql's 0.5 ms
        self::assertEqualsWithDelta(0.0019, $fn['App\\Repo::find']['self'], 1e-12);
        self::assertEqualsWithDelta(0.0060, $fn['App\\Repo::find']['incl'], 1e-12);
        self::assertEqualsWithDelta(0.0019, $fn['PDO::__construct']['incl'], 1e-12);
        // {main}: 12 ms profiled minus 3 ms shutdown = 9 ms; calls 8 ms; + the constructor's 0.1 ms
        self::assertEqualsWithDelta(0.0090, $fn[Frames::MAIN]['incl'], 1e-12);
        self::assertEqualsWithDelta(0.0011, $fn[Frames::MAIN]['self'], 1e-12);
        $this->assertInvariants($list);
    }

    public function testLimitsAndNames(): void
    {
        $data = [];
        for ($i = 0; $i < 800; $i++) {
            $data[sprintf('App\\f%03d', $i)] = ['ct' => 1, 'wt' => $i + 1];
        }
        $data["class@anonymous\0/app/x.php:3\$0::run"] = ['ct' => 1, 'wt' => 5000];
        $data[str_repeat('L', 600)] = ['ct' => 1, 'wt' => 4000];
        $list = CallGraph::reduce($data, 0.0, [], [self::class, 'notInternal']);
        self::assertCount(Frames::MAX_FUNCTIONS, $list);
        self::assertSame('class@anonymous_/app/x.php:3$0::run', $list[0]['n']);
        self::assertSame(str_repeat('L', 512), $list[1]['n']);
        $names = array_column($list, 'n');
        self::assertContains('App\\f799', $names);
        self::assertNotContains('App\\f000', $names);
        $this->assertInvariants($list);
    }

    public function testBadInputGivesNoCrash(): void
    {
        $data = [
            'a' => 'not an array',
            'b' => ['ct' => -5, 'wt' => NAN],
            'c' => ['wt' => -100],
            'c==>d' => ['ct' => 1, 'wt' => INF],
            '==>' => ['ct' => 1, 'wt' => 1],
            'e==>' => ['ct' => 1, 'wt' => 1],
            7 => ['ct' => 1, 'wt' => 3],
            'f@' => ['ct' => 1, 'wt' => 2],
            'g@x' => ['ct' => 1, 'wt' => 2],
            // a cycle between raw nodes must not loop
            'h==>i' => ['ct' => 1, 'wt' => 5],
            'i==>h' => ['ct' => 1, 'wt' => 5],
        ];
        $list = CallGraph::reduce($data, NAN, [], [self::class, 'notInternal']);
        $this->assertInvariants($list);
        $fn = self::byName($list);
        self::assertSame(0, $fn['b']['calls']);
        self::assertSame(0.0, $fn['b']['incl']);
        self::assertArrayHasKey('7', $fn);
        self::assertArrayHasKey('f@', $fn);
        self::assertArrayHasKey('g@x', $fn);
        self::assertSame([], array_filter(CallGraph::reduce([], 0.0), static fn (array $f): bool => $f['n'] !== Frames::MAIN));
    }

    public function testBaseName(): void
    {
        self::assertSame('f', CallGraph::base('f@12'));
        self::assertSame('A::b', CallGraph::base('A::b@1'));
        self::assertSame('f@', CallGraph::base('f@'));
        self::assertSame('class@anonymous', CallGraph::base('class@anonymous'));
        self::assertSame('f', CallGraph::base('f'));
    }

    /**
     * @param list<array{n:string,self:float,incl:float,calls?:int}> $fn
     */
    private function assertInvariants(array $fn): void
    {
        $prev = INF;
        foreach ($fn as $f) {
            self::assertIsString($f['n']);
            self::assertNotSame('', $f['n']);
            self::assertTrue(is_finite($f['self']) && is_finite($f['incl']), $f['n']);
            self::assertGreaterThanOrEqual(0.0, $f['self']);
            self::assertLessThanOrEqual($f['incl'], $f['self'], $f['n']);
            self::assertLessThanOrEqual($prev, $f['self'], 'heaviest self first');
            self::assertGreaterThanOrEqual(0, $f['calls'] ?? 0);
            $prev = $f['self'];
        }
    }
}
