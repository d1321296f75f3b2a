<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\CallGraphProfiler;
use Bitville\Apm\Profiler\ProfilerFactory;
use Bitville\Apm\Profiler\SamplingProfiler;
use PHPUnit\Framework\TestCase;

use function BitvilleProfilerFixture\burnCpu;

require_once __DIR__ . '/Fixture/workload.php';

final class ProfilerFactoryTest extends TestCase
{
    private const ALL = ['excimer' => true, 'tideways' => true, 'xhprof' => true];
    private const NONE = ['excimer' => false, 'tideways' => false, 'xhprof' => false];

    public function testOffAndUnknownSettingsGiveNothing(): void
    {
        foreach (['off', 'OFF', '', 'none', 'blackfire', 'excimer2'] as $setting) {
            self::assertNull(ProfilerFactory::createFor($setting, 0.01, false, self::ALL), $setting);
            self::assertNull(ProfilerFactory::createFor($setting, 0.01, true, self::ALL), $setting);
            self::assertNull(ProfilerFactory::create($setting, 0.01, true), $setting);
        }
    }

    public function testMissingExtensionsGiveNothing(): void
    {
        foreach (['excimer', 'tideways', 'xhprof'] as $setting) {
            self::assertNull(ProfilerFactory::createFor($setting, 0.01, false, self::NONE), $setting);
            self::assertNull(ProfilerFactory::createFor($setting, 0.01, true, self::NONE), $setting);
        }
        self::assertNull(ProfilerFactory::createFor('tideways', 0.01, true, ['excimer' => false, 'xhprof' => true]));
        self::assertNull(ProfilerFactory::createFor('excimer', 0.01, true, ['tideways' => true, 'xhprof' => true]));
        self::assertNull(ProfilerFactory::createFor('xhprof', 0.01, false, ['tideways' => true, 'xhprof' => true]));
    }

    public function testTheSettingPicksTheCallGraphExtension(): void
    {
        $p = ProfilerFactory::createFor('excimer', 0.01, false, self::ALL);
        self::assertInstanceOf(SamplingProfiler::class, $p);
        self::assertSame('excimer', $p->name());

        // excimer never builds call graphs
        $p = ProfilerFactory::createFor('excimer', 0.01, true, self::ALL);
        self::assertSame('excimer', $p?->name());

        // call graphs only on sampled/forced requests
        self::assertSame('excimer', ProfilerFactory::createFor('tideways', 0.01, false, self::ALL)?->name());
        self::assertSame('excimer', ProfilerFactory::createFor('xhprof', 0.01, false, self::ALL)?->name());

        $p = ProfilerFactory::createFor(' Tideways ', 0.01, true, self::ALL);
        self::assertInstanceOf(CallGraphProfiler::class, $p);
        self::assertSame('tideways', $p->name());
        self::assertSame('xhprof', ProfilerFactory::createFor('xhprof', 0.01, true, self::ALL)?->name());

        // a missing call-graph extension falls back to sampling
        self::assertSame('excimer', ProfilerFactory::createFor('xhprof', 0.01, true, ['excimer' => true, 'tideways' => true])?->name());
        // and without Excimer the call graph runs alone
        self::assertSame('tideways', ProfilerFactory::createFor('tideways', 0.01, true, ['tideways' => true])?->name());
    }

    public function testPeriodIsClamped(): void
    {
        self::assertSame(ProfilerFactory::DEFAULT_PERIOD, ProfilerFactory::period(0.0));
        self::assertSame(ProfilerFactory::DEFAULT_PERIOD, ProfilerFactory::period(-1.0));
        self::assertSame(ProfilerFactory::DEFAULT_PERIOD, ProfilerFactory::period(NAN));
        self::assertSame(ProfilerFactory::DEFAULT_PERIOD, ProfilerFactory::period(INF));
        self::assertSame(ProfilerFactory::MIN_PERIOD, ProfilerFactory::period(0.00001));
        self::assertSame(ProfilerFactory::MAX_PERIOD, ProfilerFactory::period(3600.0));
        self::assertSame(0.02, ProfilerFactory::period(0.02));

        $p = ProfilerFactory::createFor('excimer', 0.0000001, false, self::ALL);
        self::assertInstanceOf(SamplingProfiler::class, $p);
        self::assertSame(ProfilerFactory::MIN_PERIOD, $p->period());
    }

    public function testAShareOfRequestsIsSampledMoreOftenAndWeighted(): void
    {
        // 10 % of requests at a tenth of the period, each sample standing
        // for the whole period: the same expected totals.
        $p = ProfilerFactory::createFor('excimer', 0.1, false, self::ALL, 0.1);
        self::assertInstanceOf(SamplingProfiler::class, $p);
        self::assertEqualsWithDelta(0.1, $p->period(), 1e-12, 'the weight of a sample');
        self::assertEqualsWithDelta(0.01, self::realPeriod($p), 1e-12, 'what Excimer samples at');

        // Where the shorter period would go below the minimum, the weight
        // follows the clamped period.
        $p = ProfilerFactory::createFor('excimer', 0.005, false, self::ALL, 0.1);
        self::assertSame(ProfilerFactory::MIN_PERIOD, self::realPeriod($p));
        self::assertEqualsWithDelta(0.01, $p->period(), 1e-12);

        // Rate 1, or nonsense, is every request at the period.
        foreach ([1.0, 0.0, -1.0, NAN, 2.0] as $rate) {
            $p = ProfilerFactory::createFor('excimer', 0.1, false, self::ALL, $rate);
            self::assertSame(0.1, self::realPeriod($p));
            self::assertSame(0.1, $p->period());
        }

        // Not drawn: no sampler; a call graph still runs, without one.
        self::assertNull(ProfilerFactory::createFor('excimer', 0.1, false, self::ALL, 0.1, false));
        $cg = ProfilerFactory::createFor('tideways', 0.1, true, self::ALL, 0.1, false);
        self::assertInstanceOf(CallGraphProfiler::class, $cg);
    }

    private static function realPeriod(?object $p): float
    {
        self::assertInstanceOf(SamplingProfiler::class, $p);
        return (new \ReflectionProperty(SamplingProfiler::class, 'period'))->getValue($p);
    }

    public function testAProfilerWhoseExtensionIsMissingNeverThrows(): void
    {
        if (\function_exists('xhprof_enable')) {
            self::markTestSkipped('xhprof is loaded here');
        }
        // told xhprof is there while it is not: start and stop must stay quiet
        $p = ProfilerFactory::createFor('xhprof', 0.01, true, ['xhprof' => true, 'excimer' => \extension_loaded('excimer')]);
        self::assertInstanceOf(CallGraphProfiler::class, $p);
        $p->start();
        burnCpu(0.02);
        $r = $p->stop();
        self::assertSame([], $r['fn']);
        self::assertIsArray($r['stacks']);
    }

    public function testCreateMatchesTheLoadedExtensions(): void
    {
        $p = ProfilerFactory::create('tideways', 0.01, true);
        if (\function_exists('tideways_xhprof_enable')) {
            self::assertSame('tideways', $p?->name());
        } elseif (\extension_loaded('excimer')) {
            self::assertSame('excimer', $p?->name());
        } else {
            self::assertNull($p);
        }
    }
}
