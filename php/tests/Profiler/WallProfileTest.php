<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Messages;
use Bitville\Apm\Profiler\CallSite;
use Bitville\Apm\Profiler\SamplingProfiler;
use Bitville\Apm\Profiler\WallProfile;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

use function BitvilleProfilerFixture\blockInUsleep;
use function BitvilleProfilerFixture\burnCpu;

require_once __DIR__ . '/Fixture/workload.php';
require_once __DIR__ . '/Fixture/callsites.php';

final class WallProfileTest extends TestCase
{
    private const FIXTURE = __DIR__ . '/Fixture/callsites.php';

    protected function setUp(): void
    {
        CallSite::reset();
    }

    private static function line(string $case): int
    {
        foreach (file(self::FIXTURE) ?: [] as $i => $text) {
            if (str_ends_with(rtrim($text), '// resume: ' . $case)) {
                return $i + 1;
            }
        }
        self::fail("no marker $case");
    }

    public function testSamplesAndBlockingCalls(): void
    {
        $script = ['file' => '/app/index.php', 'line' => 9];
        $session = ['file' => self::FIXTURE, 'line' => self::line('session'), 'function' => 'BitvilleCallSiteFixture\\sessionStart'];
        $loop = ['file' => self::FIXTURE, 'line' => self::line('loop'), 'function' => 'BitvilleCallSiteFixture\\loop'];
        $agent = ['file' => dirname(__DIR__, 2) . '/src/Pdo/TracedPdo.php', 'line' => 30, 'class' => 'Bitville\\Apm\\Pdo\\TracedPdo', 'function' => 'query'];
        $app = ['file' => '/app/Repo.php', 'line' => 12, 'class' => 'App\\Repo', 'function' => 'find'];
        $parts = WallProfile::collect([
            [[$session, $script], 3],        // blocked 3 periods in session_start()
            [[$session, $script], 1],        // an ordinary sample there
            [[$loop, $script], 2],           // unsure: stays on the function
            [[$agent, $app, $script], 2],    // the agent's wrapper is hidden
            [[$script], 1],                  // top-level code
            [[['file' => dirname(__DIR__, 3) . '/php/bootstrap.php', 'line' => 3]], 4], // the agent's own work
        ], 0.5);
        $wall = WallProfile::rank([$parts]);
        self::assertSame([
            ['n' => 'session_start', 'c' => 'BitvilleCallSiteFixture\\sessionStart', 's' => 1.5],
            ['n' => 'App\\Repo::find', 'c' => '{main}', 's' => 1.0],
            ['n' => 'BitvilleCallSiteFixture\\loop', 'c' => '{main}', 's' => 1.0],
            ['n' => 'BitvilleCallSiteFixture\\sessionStart', 'c' => '{main}', 's' => 0.5],
            ['n' => '{main}', 'c' => '', 's' => 0.5],
        ], $wall);
    }

    /**
     * Past the long-request mark a request stands for itself: the part of
     * an entry after the mark counts at its own length, the rest weighted.
     */
    public function testTheTimeAfterTheMarkIsNotWeighted(): void
    {
        $app = ['file' => '/app/Repo.php', 'line' => 12, 'class' => 'App\\Repo', 'function' => 'find'];
        // period 0.1 s weighted 1 s (a tenth drawn), mark at 1.0 s
        $parts = WallProfile::collect([
            [[$app], 15, 1.5],  // blocked from 0 to 1.5 s: 1.0 s before the mark, 0.5 s after
            [[$app], 1, 0.5],   // before the mark
            [[$app], 2, 2.0],   // wholly after it
        ], 1.0, 0.1, 1.0);
        self::assertEqualsWithDelta(10.0 + 0.5 + 1.0 + 0.2, $parts["App\\Repo::find\0"], 1e-9);
        // no mark: all weighted
        self::assertEqualsWithDelta(18.0, WallProfile::collect([[[$app], 15, 1.5], [[$app], 1, 0.5], [[$app], 2, 2.0]], 1.0, 0.1)["App\\Repo::find\0"], 1e-9);
    }

    public function testABlockedTickNamesTheCall(): void
    {
        $session = ['file' => self::FIXTURE, 'line' => self::line('session'), 'function' => 'BitvilleCallSiteFixture\\sessionStart', 'class' => ''];
        self::assertSame(['session_start', 'BitvilleCallSiteFixture\\sessionStart'], WallProfile::blocked(['{main}', 'BitvilleCallSiteFixture\\sessionStart'], $session));
        self::assertSame(['App\\Repo::find', '{main}'], WallProfile::blocked(['{main}', 'App\\Repo::find'], null));
        self::assertSame(['{main}', ''], WallProfile::blocked(['{main}'], null));
        self::assertNull(WallProfile::blocked([], null));
    }

    public function testRankAddsPartsAndKeepsTheLimit(): void
    {
        $a = [];
        for ($i = 0; $i < Messages::MAX_WALL + 20; $i++) {
            $a["f$i\0{main}"] = 0.001 * ($i + 1);
        }
        $wall = WallProfile::rank([$a, ["f0\0{main}" => 10.0]]);
        self::assertCount(Messages::MAX_WALL, $wall);
        self::assertSame(['n' => 'f0', 'c' => '{main}', 's' => 10.001], $wall[0]);
        self::assertSame('f' . (Messages::MAX_WALL + 19), $wall[1]['n']);
        self::assertSame([], WallProfile::rank([]));
    }

    public function testARealBlockingCallIsNamed(): void
    {
        if (!\extension_loaded('excimer')) {
            self::markTestSkipped('excimer is not loaded');
        }
        $p = new SamplingProfiler(0.05, SamplingProfiler::CPU_CLOCK, 0.0, 0.01);
        $p->start();
        blockInUsleep(300000);
        burnCpu(0.02);
        $r = $p->stop();
        self::assertArrayHasKey('wall', $r);
        $hit = null;
        foreach ($r['wall'] as $w) {
            if ($w['n'] === 'usleep') {
                $hit = $w;
            }
        }
        self::assertNotNull($hit, json_encode($r['wall']));
        self::assertSame('BitvilleProfilerFixture\\blockInUsleep', $hit['c']);
        self::assertSame('usleep', $r['wall'][0]['n'], 'the heaviest');
        self::assertGreaterThan(0.0, $hit['s']);
    }

    public function testASessionLockHeldByAnotherProcessIsNamed(): void
    {
        if (!\extension_loaded('excimer') || !\extension_loaded('session')) {
            self::markTestSkipped('excimer or session is not loaded');
        }
        $dir = TempDir::create();
        $holder = null;
        try {
            $id = 'bitvilletest' . bin2hex(random_bytes(4));
            // A second process opens the same session (the files handler
            // flocks its file) and keeps it for a second.
            $code = 'session_save_path($argv[1]); session_id($argv[2]); session_start(); echo "locked\n"; usleep(1000000);';
            $holder = proc_open([PHP_BINARY, '-r', $code, $dir, $id], [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
            self::assertIsResource($holder);
            self::assertSame("locked\n", fgets($pipes[1]), 'the holder has the lock');

            // This process (a CLI script: no output before session_start)
            // waits for it under the profiler.
            $out = shell_exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg(__DIR__ . '/Fixture/session-wait.php') . ' ' . escapeshellarg($dir) . ' ' . escapeshellarg($id));
            $wall = json_decode((string) $out, true);
            self::assertIsArray($wall, (string) $out);
            self::assertNotSame([], $wall);
            self::assertSame(['n' => 'session_start', 'c' => 'BitvilleSessionFixture\\waitForTheSession'], ['n' => $wall[0]['n'], 'c' => $wall[0]['c']], json_encode($wall));
            self::assertGreaterThan(0.0, $wall[0]['s']);
        } finally {
            if (\is_resource($holder)) {
                proc_terminate($holder);
                proc_close($holder);
            }
            TempDir::remove($dir);
        }
    }
}
