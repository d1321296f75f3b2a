<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\CollapsedProfile;
use Bitville\Apm\Profiler\Frames;
use PHPUnit\Framework\TestCase;

final class CollapsedProfileTest extends TestCase
{
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

    public function testSelfInclusiveAndStacksFromExcimerOutput(): void
    {
        // Excimer 1.0.4 prefixes every line but the first with ';'.
        $collapsed = "/var/www/public/index.php;App\\Kernel::handle;App\\Orders::show;App\\Pricing::total 30\n"
            . ";/var/www/public/index.php;App\\Kernel::handle;App\\Orders::show 10\n"
            . ";/var/www/public/index.php;App\\Kernel::handle;{closure:/var/www/src/Kernel.php(40)};App\\Pricing::total 5\n"
            . ";/var/www/public/index.php 2\n";
        $p = CollapsedProfile::build($collapsed, 0.01);
        $fn = self::byName($p['fn']);

        self::assertSame('App\\Pricing::total', $p['fn'][0]['n']);
        self::assertEqualsWithDelta(0.35, $fn['App\\Pricing::total']['self'], 1e-9);
        self::assertEqualsWithDelta(0.35, $fn['App\\Pricing::total']['incl'], 1e-9);
        self::assertEqualsWithDelta(0.10, $fn['App\\Orders::show']['self'], 1e-9);
        self::assertEqualsWithDelta(0.40, $fn['App\\Orders::show']['incl'], 1e-9);
        self::assertEqualsWithDelta(0.0, $fn['App\\Kernel::handle']['self'], 1e-9);
        self::assertEqualsWithDelta(0.45, $fn['App\\Kernel::handle']['incl'], 1e-9);
        self::assertEqualsWithDelta(0.02, $fn[Frames::MAIN]['self'], 1e-9);
        self::assertEqualsWithDelta(0.47, $fn[Frames::MAIN]['incl'], 1e-9);
        self::assertArrayHasKey('{closure:/var/www/src/Kernel.php(40)}', $fn);
        self::assertArrayNotHasKey('/var/www/public/index.php', $fn);

        self::assertSame([
            ['s' => '{main};App\\Kernel::handle;App\\Orders::show;App\\Pricing::total', 'n' => 30],
            ['s' => '{main};App\\Kernel::handle;App\\Orders::show', 'n' => 10],
            ['s' => '{main};App\\Kernel::handle;{closure:/var/www/src/Kernel.php(40)};App\\Pricing::total', 'n' => 5],
            ['s' => '{main}', 'n' => 2],
        ], $p['stacks']);
        $this->assertInvariants($p['fn']);
    }

    public function testRecursionCountsOnceInInclusiveTime(): void
    {
        $p = CollapsedProfile::build("/app/x.php;f;g;f;g;f 4\n;/app/x.php;f;g 6\n", 0.5);
        $fn = self::byName($p['fn']);
        self::assertEqualsWithDelta(5.0, $fn['f']['incl'], 1e-9);
        self::assertEqualsWithDelta(2.0, $fn['f']['self'], 1e-9);
        self::assertEqualsWithDelta(5.0, $fn['g']['incl'], 1e-9);
        self::assertEqualsWithDelta(3.0, $fn['g']['self'], 1e-9);
        $this->assertInvariants($p['fn']);
    }

    public function testIncludedFilesKeepTheirPathAndTheOutermostFileIsMain(): void
    {
        $p = CollapsedProfile::build("/app/public/index.php;/app/config/routes.php;App\\load 3\n", 0.01);
        self::assertSame('{main};/app/config/routes.php;App\\load', $p['stacks'][0]['s']);
    }

    public function testAgentFramesAreRemovedAndTheirTimeGoesToTheCaller(): void
    {
        $src = \dirname(__DIR__, 2) . '/src';
        $collapsed = "/app/index.php;App\\Repo::find;Bitville\\Apm\\Pdo\\TracedStatement::execute 7\n"
            . ";/app/index.php;App\\Repo::find;Bitville\\Apm\\Pdo\\TracedPdo::query;{closure:$src/Agent.php(88)};App\\Hook::onQuery 1\n"
            // the agent's shutdown function: its own work, dropped
            . ";Bitville\\Apm\\Agent::shutdown;Bitville\\Apm\\Profiler\\SamplingProfiler::stop 5\n"
            // the prepend file: dropped
            . ";" . \dirname(__DIR__, 2) . "/bootstrap.php;Bitville\\Apm\\Agent::start 2\n";
        $p = CollapsedProfile::build($collapsed, 0.001);
        $fn = self::byName($p['fn']);

        self::assertEqualsWithDelta(0.007, $fn['App\\Repo::find']['self'], 1e-12);
        self::assertEqualsWithDelta(0.008, $fn['App\\Repo::find']['incl'], 1e-12);
        self::assertEqualsWithDelta(0.001, $fn['App\\Hook::onQuery']['self'], 1e-12);
        self::assertEqualsWithDelta(0.008, $fn[Frames::MAIN]['incl'], 1e-12);
        foreach ($p['fn'] as $f) {
            self::assertFalse(Frames::isAgent($f['n']), $f['n']);
        }
        self::assertSame([
            ['s' => '{main};App\\Repo::find', 'n' => 7],
            ['s' => '{main};App\\Repo::find;App\\Hook::onQuery', 'n' => 1],
        ], $p['stacks']);
    }

    public function testStacksThatBecomeEqualAreMerged(): void
    {
        $p = CollapsedProfile::build(
            "/app/index.php;App\\a;Bitville\\Apm\\X::y 2\n;/app/index.php;App\\a;Bitville\\Apm\\X::z 3\n;/app/index.php;App\\a 1\n",
            0.01
        );
        self::assertSame([['s' => '{main};App\\a', 'n' => 6]], $p['stacks']);
        self::assertEqualsWithDelta(0.06, self::byName($p['fn'])['App\\a']['self'], 1e-12);
    }

    public function testExcimerDepthMarkerIsKeptInStacksButIsNoFunction(): void
    {
        $p = CollapsedProfile::build("excimer_truncated;App\\deep;App\\deeper 4\n", 0.01);
        self::assertSame('{truncated};App\\deep;App\\deeper', $p['stacks'][0]['s']);
        self::assertSame(['App\\deeper', 'App\\deep'], array_column($p['fn'], 'n'));
    }

    public function testLimitsAreEnforcedKeepingTheHeaviest(): void
    {
        $lines = [];
        // 700 leaf functions, each in its own stack; leaf i has i+1 samples
        for ($i = 0; $i < 700; $i++) {
            $lines[] = sprintf('/app/index.php;App\\Caller;App\\Leaf%03d %d', $i, $i + 1);
        }
        // a very deep stack with long frame names
        $deep = ['/app/index.php'];
        for ($i = 0; $i < 120; $i++) {
            $deep[] = sprintf('App\\Deep\\Frame%03d::%s', $i, str_repeat('m', 200));
        }
        $lines[] = implode(';', $deep) . ' 1000';
        // a name over 512 bytes, with a multibyte character across the cut
        $long = 'App\\' . str_repeat('n', 507) . 'ü' . str_repeat('z', 100);
        $lines[] = '/app/index.php;' . $long . ' 2000';
        shuffle($lines);

        $p = CollapsedProfile::build(implode("\n", $lines) . "\n", 0.001);

        self::assertCount(Frames::MAX_FUNCTIONS, $p['fn']);
        self::assertCount(Frames::MAX_STACKS, $p['stacks']);
        $names = array_column($p['fn'], 'n');
        self::assertContains('App\\Leaf699', $names);
        self::assertNotContains('App\\Leaf000', $names);
        // 'ü' takes bytes 512 and 513 (1-based): it is dropped whole
        self::assertSame('App\\' . str_repeat('n', 507), $p['fn'][0]['n']);
        foreach ($p['fn'] as $f) {
            self::assertLessThanOrEqual(Frames::MAX_NAME_BYTES, \strlen($f['n']));
            self::assertTrue(mb_check_encoding($f['n'], 'UTF-8'));
        }
        foreach ($p['stacks'] as $s) {
            self::assertLessThanOrEqual(Frames::MAX_STACK_BYTES, \strlen($s['s']));
            self::assertGreaterThanOrEqual(1, $s['n']);
        }
        // the heaviest stacks are kept, in order
        self::assertSame(2000, $p['stacks'][0]['n']);
        self::assertSame(1000, $p['stacks'][1]['n']);
        self::assertStringStartsWith(Frames::TRUNCATED . ';', $p['stacks'][1]['s']);
        self::assertStringEndsWith('Frame119::' . str_repeat('m', 200), $p['stacks'][1]['s']);
        self::assertSame(700, $p['stacks'][2]['n']);
        self::assertSame(503, $p['stacks'][199]['n']);
        $this->assertInvariants($p['fn']);

        // the same input in another order gives the same output
        shuffle($lines);
        self::assertSame($p, CollapsedProfile::build(implode("\n", $lines), 0.001));
    }

    public function testBadInputGivesNoCrash(): void
    {
        foreach (['', "\n\n", 'garbage', "a;b notanumber\n", "a;b -3\n", ";;; 5\n", " 5\n"] as $in) {
            $p = CollapsedProfile::build($in, 0.01);
            self::assertSame([], $p['stacks'], var_export($in, true));
            self::assertSame([], $p['fn']);
        }
    }

    /**
     * @param list<array{n:string,self:float,incl:float}> $fn
     */
    private function assertInvariants(array $fn): void
    {
        $prev = INF;
        foreach ($fn as $f) {
            self::assertLessThanOrEqual($f['incl'], $f['self'], $f['n']);
            self::assertGreaterThanOrEqual(0.0, $f['self']);
            self::assertLessThanOrEqual($prev, $f['self'], 'heaviest self first');
            $prev = $f['self'];
        }
    }
}
