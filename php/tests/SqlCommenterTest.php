<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\SqlCommenter;
use PHPUnit\Framework\TestCase;

final class SqlCommenterTest extends TestCase
{
    public function testCommentMatchesTheGoldenForm(): void
    {
        // testdata/protocol/end.json carries exactly this comment
        self::assertSame("/*endpoint='GET%20%2Forders%2F%7Bid%7D'*/", SqlCommenter::comment('GET /orders/{id}'));
    }

    public function testCorrelationIdComesFirst(): void
    {
        self::assertSame(
            "/*correlation_id='0af76519-16cd',endpoint='POST%20%2Fcart'*/",
            SqlCommenter::comment('POST /cart', '0af76519-16cd'),
        );
    }

    public function testValuesCannotBreakOutOfTheComment(): void
    {
        $c = SqlCommenter::comment("GET /x*/'; DROP TABLE t; --");
        self::assertSame(1, substr_count($c, '*/'));
        self::assertStringEndsWith("'*/", $c);
        self::assertSame(2, substr_count($c, "'"));
    }

    /** @return array<string, array{string, string}> */
    public static function statements(): array
    {
        $c = "/*endpoint='GET%20%2Fx'*/";
        return [
            'appended' => ['SELECT 1', "SELECT 1 $c"],
            'trailing space' => ["SELECT 1 \n", "SELECT 1 $c"],
            'before semicolon' => ['SELECT 1;', "SELECT 1 $c;"],
            'before semicolon and space' => ['SELECT 1 ; ', "SELECT 1 $c;"],
            'already commented' => ["SELECT 1 /*endpoint='x'*/", "SELECT 1 /*endpoint='x'*/"],
            'other comment' => ['SELECT /* hint */ 1', 'SELECT /* hint */ 1'],
            'line comment' => ["SELECT 1 -- note", "SELECT 1 -- note"],
            'empty' => ['', ''],
        ];
    }

    /** @dataProvider statements */
    public function testApply(string $sql, string $want): void
    {
        self::assertSame($want, SqlCommenter::apply($sql, "/*endpoint='GET%20%2Fx'*/"));
    }

    public function testApplyIsIdempotent(): void
    {
        $c = SqlCommenter::comment('GET /x');
        $once = SqlCommenter::apply('SELECT 1', $c);
        self::assertSame($once, SqlCommenter::apply($once, $c));
    }
}
