<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\CallGraphProfiler;
use Bitville\Apm\Profiler\Frames;
use Bitville\Apm\Profiler\ProfilerFactory;
use Bitville\Apm\Tests\Profiler\Fixture\AgentWrapper;
use BitvilleProfilerFixture\Service;
use PHPUnit\Framework\TestCase;

use function BitvilleProfilerFixture\burnCpu;
use function BitvilleProfilerFixture\recurse;

require_once __DIR__ . '/Fixture/workload.php';

/**
 * The real tideways_xhprof extension.
 */
final class CallGraphProfilerTest extends TestCase
{
    protected function setUp(): void
    {
        if (!\function_exists('tideways_xhprof_enable')) {
            self::markTestSkipped('tideways_xhprof is not loaded');
        }
    }

    /**
     * @param list<array{n:string,self:float,incl:float,calls?:int}> $fn
     * @return array<string,array{n:string,self:float,incl:float,calls?:int}>
     */
    private static function byName(array $fn): array
    {
        $out = [];
        foreach ($fn as $f) {
            $out[$f['n']] = $f;
        }
        return $out;
    }

    public function testCallGraphGivesCallsAndRealTimes(): void
    {
        $p = ProfilerFactory::create('tideways', 0.001, true);
        self::assertInstanceOf(CallGraphProfiler::class, $p);
        self::assertSame('tideways', $p->name());

        $p->start();
        (new Service())->handle(0.05);
        recurse(3, 0.01);
        AgentWrapper::call(static fn (): float => burnCpu(0.01));
        $r = $p->stop();

        $fn = self::byName($r['fn']);
        self::assertSame('BitvilleProfilerFixture\\burnCpu', $r['fn'][0]['n']);
        // Service::handle: 1 from outer(), 2 from the closure; recurse: 1; wrapper: 1
        self::assertSame(5, $fn['BitvilleProfilerFixture\\burnCpu']['calls']);
        self::assertSame(4, $fn['BitvilleProfilerFixture\\recurse']['calls']);
        self::assertSame(1, $fn['BitvilleProfilerFixture\\Service::handle']['calls']);
        self::assertGreaterThanOrEqual(0.05, $fn['BitvilleProfilerFixture\\Service::handle']['incl']);
        self::assertGreaterThanOrEqual(0.07, $fn['BitvilleProfilerFixture\\burnCpu']['incl']);
        self::assertGreaterThan(0, $fn['hrtime']['calls']);
        self::assertArrayHasKey(Frames::MAIN, $fn);

        foreach ($r['fn'] as $f) {
            self::assertArrayHasKey('calls', $f);
            self::assertLessThanOrEqual($f['incl'], $f['self'], $f['n']);
            self::assertStringStartsNotWith('Bitville\\Apm\\', $f['n']);
        }
        self::assertArrayNotHasKey('tideways_xhprof_disable', $fn, 'the stop path is the agent\'s');

        // Excimer runs alongside for the flame graph
        if (\extension_loaded('excimer')) {
            self::assertSame(0.001, $r['period']);
            self::assertNotSame([], $r['stacks']);
            self::assertStringEndsWith('BitvilleProfilerFixture\\burnCpu', $r['stacks'][0]['s']);
        } else {
            self::assertNull($r['period']);
            self::assertSame([], $r['stacks']);
        }
        self::assertNotFalse(json_encode($r, JSON_THROW_ON_ERROR));
    }

    public function testStopWithoutStartAndTwice(): void
    {
        $p = ProfilerFactory::create('tideways', 0.001, true);
        self::assertNotNull($p);
        $r = $p->stop();
        self::assertSame([], $r['fn']);
        $p->start();
        burnCpu(0.005);
        self::assertNotSame([], $p->stop()['fn']);
        self::assertSame([], $p->stop()['fn']);
    }
}
