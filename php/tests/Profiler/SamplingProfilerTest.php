<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\Frames;
use Bitville\Apm\Profiler\ProfilerFactory;
use Bitville\Apm\Profiler\SamplingProfiler;
use Bitville\Apm\Tests\Profiler\Fixture\AgentWrapper;
use BitvilleProfilerFixture\Service;
use PHPUnit\Framework\TestCase;

use function BitvilleProfilerFixture\burnCpu;
use function BitvilleProfilerFixture\outer;
use function BitvilleProfilerFixture\waitFor;
use function BitvilleProfilerFixture\recurseThroughAFunctionWhoseNameIsLongEnoughToMakeDeepStacksOverflowTheByteLimitOfOneStack as deepRecursion;

require_once __DIR__ . '/Fixture/workload.php';

/**
 * Real Excimer sampling. No timing assertions: wall-clock samples land in
 * the busy function whatever else runs on the machine.
 */
final class SamplingProfilerTest extends TestCase
{
    private const BURN = 'BitvilleProfilerFixture\\burnCpu';
    private const WAIT = 'BitvilleProfilerFixture\\waitFor';

    protected function setUp(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
    }

    public function testBusyFunctionHasTheMostSelfTimeAndIsInTheStacks(): void
    {
        $p = ProfilerFactory::create('excimer', 0.001, false);
        self::assertInstanceOf(SamplingProfiler::class, $p);
        self::assertSame('excimer', $p->name());

        $p->start();
        (new Service())->handle(0.15);
        $r = $p->stop();

        self::assertSame(0.001, $r['period']);
        self::assertNotSame([], $r['fn']);
        self::assertSame(self::BURN, $r['fn'][0]['n']);
        self::assertGreaterThan(0.0, $r['fn'][0]['self']);

        $found = false;
        $samples = 0;
        $prev = PHP_INT_MAX;
        foreach ($r['stacks'] as $s) {
            self::assertLessThanOrEqual($prev, $s['n'], 'most samples first');
            $prev = $s['n'];
            $samples += $s['n'];
            if (str_ends_with($s['s'], 'BitvilleProfilerFixture\\Service::handle;BitvilleProfilerFixture\\outer;' . self::BURN)) {
                $found = true;
                self::assertStringStartsWith(Frames::MAIN . ';', $s['s']);
            }
            self::assertStringNotContainsString('Bitville\\Apm\\', $s['s'], 'agent and test frames are hidden');
        }
        self::assertTrue($found, 'a stack ends in Service::handle;outer;burnCpu: ' . json_encode($r['stacks']));

        // seconds = samples × period: self times add up to all samples
        $selfSum = 0.0;
        foreach ($r['fn'] as $f) {
            self::assertLessThanOrEqual($f['incl'], $f['self'], $f['n']);
            self::assertStringStartsNotWith('Bitville\\Apm\\', $f['n']);
            $selfSum += $f['self'];
        }
        self::assertEqualsWithDelta($samples * 0.001, $selfSum, 1e-9);
        $main = array_values(array_filter($r['fn'], static fn (array $f): bool => $f['n'] === Frames::MAIN));
        self::assertCount(1, $main);
        self::assertEqualsWithDelta($samples * 0.001, $main[0]['incl'], 1e-9, '{main} holds every sample');

        self::assertNotFalse(json_encode($r, JSON_THROW_ON_ERROR));
    }

    public function testSamplesOfADrawnShareAreWeighted(): void
    {
        // Every 4 ms of CPU, each sample standing for 40 ms (a rate of 0.1).
        $p = new SamplingProfiler(0.004, SamplingProfiler::CPU_CLOCK, 0.04);
        $p->start();
        burnCpu(0.2);
        $r = $p->stop();
        self::assertSame(0.04, $r['period']);
        self::assertNotSame([], $r['fn']);
        $samples = 0;
        foreach ($r['stacks'] as $st) {
            $samples += $st['n'];
        }
        self::assertGreaterThan(10, $samples, 'about 50 samples in 0.2 s of CPU');
        // Times are whole samples of 40 ms: the burner's inclusive time is
        // the samples it was on, times the weight.
        self::assertSame(self::BURN, $r['fn'][0]['n']);
        $n = $r['fn'][0]['incl'] / 0.04;
        self::assertEqualsWithDelta(round($n), $n, 1e-6);
        self::assertGreaterThan(0.4, $r['fn'][0]['incl'], '0.2 s of CPU, counted ten times over');
    }

    public function testAFullRatePhaseKeepsTheFirstPhasesWeights(): void
    {
        // A drawn request (every 4 ms, each sample 40 ms), then the
        // long-request mark: every 10 ms, each sample 10 ms.
        $p = new SamplingProfiler(0.004, SamplingProfiler::CPU_CLOCK, 0.04, 0.004, 0.04);
        $p->start();
        burnCpu(0.1);
        $p->fullRate(0.01);
        outer(0.1);
        $r = $p->stop();
        self::assertSame(0.01, $r['period'], 'the smallest weight used');
        $byName = self::byName($r['fn']);
        self::assertArrayHasKey(self::BURN, $byName);
        self::assertArrayHasKey('BitvilleProfilerFixture\\outer', $byName, 'the second phase');
        $samples = 0;
        foreach ($r['stacks'] as $st) {
            self::assertIsInt($st['n']);
            self::assertGreaterThanOrEqual(1, $st['n']);
            $samples += $st['n'];
        }
        // stacks in units of the message's period: their total is the
        // CPU seconds of fn divided by the period (rounding aside)
        self::assertEqualsWithDelta($byName['{main}']['incl'] / 0.01, $samples, \count($r['stacks']));
        self::assertArrayHasKey('wall', $r);
        $callers = array_column($r['wall'], 'c');
        self::assertSame(self::BURN, $r['wall'][0]['n']);
        self::assertContains('BitvilleProfilerFixture\\outer', $callers, 'the second phase: burnCpu called from outer');
    }

    public function testAgentFramesBetweenApplicationFramesAreHidden(): void
    {
        $p = ProfilerFactory::create('excimer', 0.001, false);
        self::assertNotNull($p);
        $p->start();
        AgentWrapper::call(static fn (): float => burnCpu(0.1));
        $r = $p->stop();

        self::assertSame(self::BURN, $r['fn'][0]['n']);
        foreach ($r['fn'] as $f) {
            self::assertStringStartsNotWith('Bitville\\Apm\\', $f['n']);
        }
        foreach ($r['stacks'] as $s) {
            self::assertStringNotContainsString('AgentWrapper', $s['s']);
        }
    }

    public function testDeepStacksAreCutToTheLimits(): void
    {
        $p = ProfilerFactory::create('excimer', 0.001, false);
        self::assertNotNull($p);
        $p->start();
        deepRecursion(300, 0.1);
        $r = $p->stop();

        self::assertNotSame([], $r['stacks']);
        $deep = null;
        foreach ($r['stacks'] as $s) {
            self::assertLessThanOrEqual(Frames::MAX_STACK_BYTES, \strlen($s['s']));
            if (str_ends_with($s['s'], ';' . self::BURN)) {
                $deep = $s['s'];
            }
        }
        self::assertNotNull($deep);
        // Excimer keeps the innermost 128 frames; the byte limit cuts further.
        self::assertStringStartsWith(Frames::TRUNCATED . ';', $deep);
        self::assertLessThan(SamplingProfiler::MAX_DEPTH, substr_count($deep, ';'));
        self::assertLessThanOrEqual(Frames::MAX_FUNCTIONS, \count($r['fn']));
        self::assertSame(self::BURN, $r['fn'][0]['n']);
    }

    public function testTheCpuClockDoesNotChargeWaitingToFunctions(): void
    {
        $cpu = new SamplingProfiler(0.001);
        $cpu->start();
        waitFor(0.2);
        burnCpu(0.05);
        $r = self::byName($cpu->stop()['fn']);
        self::assertArrayHasKey(self::BURN, $r);
        self::assertGreaterThan($r[self::WAIT]['self'] ?? 0.0, $r[self::BURN]['self']);

        // the wall clock, for contrast, charges the 0.2 s wait to waitFor()
        $wall = new SamplingProfiler(0.001, SamplingProfiler::WALL_CLOCK);
        $wall->start();
        waitFor(0.2);
        burnCpu(0.05);
        $r = self::byName($wall->stop()['fn']);
        self::assertArrayHasKey(self::WAIT, $r);
        self::assertGreaterThan($r[self::BURN]['self'], $r[self::WAIT]['self']);
    }

    /**
     * @param list<array{n:string,self:float,incl:float}> $fn
     * @return array<string,array{n:string,self:float,incl:float}>
     */
    private static function byName(array $fn): array
    {
        $out = [];
        foreach ($fn as $f) {
            $out[$f['n']] = $f;
        }
        return $out;
    }

    public function testARequestWithoutSamplesCostsNoWork(): void
    {
        // The first tick is drawn uniformly within the first period: with a
        // 60 s period a ~1 ms request almost never gets one.
        $p = ProfilerFactory::create('excimer', 60.0, false);
        self::assertNotNull($p);
        $p->start();
        burnCpu(0.001);
        $r = $p->stop();
        self::assertSame(['fn' => [], 'stacks' => [], 'period' => 60.0], $r);
    }

    public function testStopTwiceAndStartAfterStopAreHarmless(): void
    {
        $p = ProfilerFactory::create('excimer', 0.001, false);
        self::assertNotNull($p);
        self::assertSame(['fn' => [], 'stacks' => [], 'period' => 0.001], $p->stop(), 'stop before start');
        $p->start();
        $p->start();
        burnCpu(0.02);
        $first = $p->stop();
        self::assertNotSame([], $first['stacks']);
        self::assertSame(['fn' => [], 'stacks' => [], 'period' => 0.001], $p->stop());
        $p->start(); // a profiler is used for one request only
        burnCpu(0.02);
        self::assertSame(['fn' => [], 'stacks' => [], 'period' => 0.001], $p->stop());
    }
}
