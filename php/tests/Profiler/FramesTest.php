<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\Frames;
use PHPUnit\Framework\TestCase;

final class FramesTest extends TestCase
{
    public function testCutNeverSplitsAUtf8Character(): void
    {
        $s = str_repeat('a', 510) . 'äöü'; // ä starts at byte 510, ö at 512
        $cut = Frames::cut($s, 512);
        self::assertSame(str_repeat('a', 510) . 'ä', $cut);
        self::assertTrue(mb_check_encoding($cut, 'UTF-8'));

        $cut = Frames::cut($s, 511); // inside ä
        self::assertSame(str_repeat('a', 510), $cut);

        self::assertSame('short', Frames::cut('short', 512));
        self::assertSame('', Frames::cut('€', 2));
    }

    public function testCleanReplacesControlCharactersAndCuts(): void
    {
        self::assertSame('class@anonymous_/app/x.php:3$0::run', Frames::clean("class@anonymous\0/app/x.php:3\$0::run"));
        self::assertSame('a_b_c', Frames::clean("a\nb\x7Fc"));
        self::assertSame(Frames::MAX_NAME_BYTES, \strlen(Frames::clean(str_repeat('x', 2000))));
        self::assertSame('App\\Plain::name', Frames::clean('App\\Plain::name'));
    }

    public function testAgentFramesAreTheNamespaceAndTheAgentsFiles(): void
    {
        $src = \dirname(__DIR__, 2) . '/src';
        $boot = \dirname(__DIR__, 2) . '/bootstrap.php';

        self::assertTrue(Frames::isAgent('Bitville\\Apm\\Agent::shutdown'));
        self::assertTrue(Frames::isAgent('Bitville\\Apm\\Pdo\\TracedPdo::query'));
        self::assertTrue(Frames::isAgent($boot));
        self::assertTrue(Frames::isAgent($src . '/Agent.php'));
        self::assertTrue(Frames::isAgent('{closure:' . $src . '/Agent.php(12)}'));
        self::assertTrue(Frames::isAgent('{closure:' . $boot . '(3)}'));

        self::assertFalse(Frames::isAgent('App\\Bitville\\Apm\\Thing::run'));
        self::assertFalse(Frames::isAgent('BitvilleApm\\x'));
        self::assertFalse(Frames::isAgent('/var/www/public/index.php'));
        self::assertFalse(Frames::isAgent('{closure:/var/www/src/a.php(1)}'));
        self::assertFalse(Frames::isAgent('{main}'));
        self::assertFalse(Frames::isAgent(''));
    }

    public function testFileScopeFramesAreRecognisedByTheirPath(): void
    {
        self::assertTrue(Frames::isFileScope('/var/www/public/index.php'));
        self::assertTrue(Frames::isFileScope('bin/cron.php'));
        self::assertTrue(Frames::isFileScope("/app/x.php(3)_:_eval()'d_code"));
        self::assertFalse(Frames::isFileScope('App\\Svc::run'));
        self::assertFalse(Frames::isFileScope('class@anonymous_/app/x.php:3$0::run'));
        self::assertFalse(Frames::isFileScope('{closure:/app/x.php(3)}'));
        self::assertFalse(Frames::isFileScope('strlen'));
        self::assertFalse(Frames::isFileScope(''));
    }

    public function testCollapseKeepsTheInnermostFramesWithinTheByteLimit(): void
    {
        $frames = ['{main}'];
        for ($i = 0; $i < 100; $i++) {
            $frames[] = sprintf('App\\Deep\\Frame%03d::%s', $i, str_repeat('m', 100));
        }
        $s = Frames::collapse($frames);
        self::assertLessThanOrEqual(Frames::MAX_STACK_BYTES, \strlen($s));
        self::assertStringStartsWith(Frames::TRUNCATED . ';', $s);
        self::assertStringEndsWith($frames[99] . ';' . $frames[100], $s);
        // the frames kept are whole frames
        foreach (\array_slice(explode(';', $s), 1) as $f) {
            self::assertContains($f, $frames);
        }
        self::assertSame('{main};a;b', Frames::collapse(['{main}', 'a', 'b']));
    }

    public function testProgressStacksKeepTheInnermost127FramesBehindAMarker(): void
    {
        $frames = [];
        for ($i = 0; $i < 300; $i++) {
            $frames[] = 'f' . $i;
        }
        $limited = Frames::limitProgress($frames);
        self::assertCount(Frames::MAX_PROGRESS_FRAMES, $limited);
        self::assertSame(Frames::TRUNCATED, $limited[0]);
        self::assertSame('f173', $limited[1]);
        self::assertSame('f299', $limited[127]);
        self::assertSame(['a', 'b'], Frames::limitProgress(['a', 'b']));
    }

    public function testRankingIsDeterministicAndCut(): void
    {
        $fn = [];
        for ($i = 0; $i < 700; $i++) {
            $fn[] = ['n' => sprintf('f%03d', $i), 'self' => (float) ($i % 10), 'incl' => 10.0];
        }
        shuffle($fn);
        $ranked = Frames::rankFunctions($fn);
        self::assertCount(Frames::MAX_FUNCTIONS, $ranked);
        self::assertSame('f009', $ranked[0]['n']);
        self::assertSame('f019', $ranked[1]['n']);
        // 70 functions per self value: 9..3 are kept (490), then the first 10 of self 2 by name
        $last = \array_slice($ranked, 490);
        self::assertSame(['f002', 'f012', 'f022', 'f032', 'f042', 'f052', 'f062', 'f072', 'f082', 'f092'], array_column($last, 'n'));
        self::assertSame(3.0, $ranked[489]['self']);

        $counts = [];
        for ($i = 0; $i < 300; $i++) {
            $counts['s' . $i] = $i % 7 + 1;
        }
        $stacks = Frames::rankStacks($counts);
        self::assertCount(Frames::MAX_STACKS, $stacks);
        self::assertSame(['s' => 's104', 'n' => 7], $stacks[0]); // ties by text
        $prev = PHP_INT_MAX;
        foreach ($stacks as $s) {
            self::assertLessThanOrEqual($prev, $s['n']);
            $prev = $s['n'];
        }
        self::assertSame([['s' => '123', 'n' => 2]], Frames::rankStacks(['123' => 2]));
    }
}
