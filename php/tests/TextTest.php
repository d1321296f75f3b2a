<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Text;
use PHPUnit\Framework\TestCase;

final class TextTest extends TestCase
{
    /** @return array<string, array{string, int, string}> */
    public static function cases(): array
    {
        return [
            'ascii short' => ['SELECT 1', 100, 'SELECT 1'],
            'ascii cut' => ['abcdef', 3, 'abc'],
            'tab newline kept' => ["a\tb\nc\r", 100, "a\tb\nc\r"],
            'control chars replaced' => ["a\x00b\x1bc\x7f", 100, 'a?b?c?'],
            'utf8 kept' => ['grüße', 100, 'grüße'],
            'utf8 not split' => ['aü', 2, 'a'],
            'utf8 3 bytes not split' => ['a€', 3, 'a'],
            'utf8 4 bytes not split' => ['a😀', 4, 'a'],
            'utf8 exact' => ['a😀', 5, 'a😀'],
            'invalid utf8 scrubbed' => ["a\xffb", 100, 'a?b'],
            'zero' => ['abc', 0, ''],
        ];
    }

    /** @dataProvider cases */
    public function testSanitize(string $in, int $max, string $want): void
    {
        $got = Text::sanitize($in, $max);
        self::assertSame($want, $got);
        self::assertLessThanOrEqual($max, strlen($got));
        self::assertTrue(Text::isClean($got));
    }

    public function testCutNeverSplitsACharacter(): void
    {
        $s = str_repeat('ü€😀x', 50);
        for ($max = 0; $max <= strlen($s); $max++) {
            $cut = Text::cut($s, $max);
            self::assertLessThanOrEqual($max, strlen($cut));
            self::assertSame(1, preg_match('//u', $cut), "cut at $max is not valid UTF-8");
            self::assertSame(substr($s, 0, strlen($cut)), $cut);
            self::assertGreaterThanOrEqual($max - 3, strlen($cut), "cut at $max lost more than a character");
        }
    }

    public function testIsClean(): void
    {
        self::assertTrue(Text::isClean("ok\ttext\n"));
        self::assertFalse(Text::isClean("nul\0"));
        self::assertFalse(Text::isClean("\xc3"));
    }
}
