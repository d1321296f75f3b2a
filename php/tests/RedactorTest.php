<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Redactor;
use Bitville\Apm\SqlCommenter;
use PHPUnit\Framework\TestCase;

final class RedactorTest extends TestCase
{
    /** @return array<string, array{string, string}> */
    public static function texts(): array
    {
        return [
            'nothing sensitive' => ['Undefined array key "discount"', 'Undefined array key "discount"'],
            'query string password' => ['GET /login?user=bob&password=hunter2&x=1', 'GET /login?user=bob&password=[REDACTED]&x=1'],
            'access_token' => ['callback?access_token=ya29.a0AfH6SM&state=1', 'callback?access_token=[REDACTED]&state=1'],
            'api key header style' => ['X-Api-Key: 0123456789abcdef', 'X-Api-Key: [REDACTED]'],
            'json pair' => ['{"user":"bob","password":"hunter 2"}', '{"user":"bob","password":"[REDACTED]"}'],
            'single quoted pair' => ["client_secret='abc def'", "client_secret='[REDACTED]'"],
            'db password' => ['connect failed: db_password=s3cret;host=db', 'connect failed: db_password=[REDACTED];host=db'],
            'bearer' => ['Authorization failed for Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_1', 'Authorization failed for Bearer [REDACTED]'],
            'basic' => ['sent Basic dXNlcjpwYXNzd29yZA==', 'sent Basic [REDACTED]'],
            'url userinfo' => ['cannot connect to pgsql://app:topsecret@db:5432/shop', 'cannot connect to pgsql://app:[REDACTED]@db:5432/shop'],
            'jwt alone' => ['token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_- rejected', 'token [REDACTED] rejected'],
            'card plain' => ['charge 4111111111111111 failed', 'charge [REDACTED] failed'],
            'card spaced' => ['card 4111 1111 1111 1111 declined', 'card [REDACTED] declined'],
            'card dashed amex' => ['card 3782-822463-10005 declined', 'card [REDACTED] declined'],
            'not luhn kept' => ['order 4111111111111112 shipped', 'order 4111111111111112 shipped'],
            'short number kept' => ['order 123456789012 shipped', 'order 123456789012 shipped'],
            'decimal kept' => ['took 0.4111111111111111 s', 'took 0.4111111111111111 s'],
            'session id' => ['PHPSESSID=abcdef0123; path=/', 'PHPSESSID=[REDACTED]; path=/'],
        ];
    }

    /** @dataProvider texts */
    public function testText(string $in, string $want): void
    {
        self::assertSame($want, (new Redactor())->text($in));
    }

    /** @return array<string, array{string, string}> */
    public static function statements(): array
    {
        return [
            'no literals touched' => [
                "SELECT o.id FROM orders o WHERE o.id = 12345 AND o.status = 'open'",
                "SELECT o.id FROM orders o WHERE o.id = 12345 AND o.status = 'open'",
            ],
            'placeholders stay' => [
                'SELECT id FROM users WHERE password_hash = $1 AND api_token = ?',
                'SELECT id FROM users WHERE password_hash = $1 AND api_token = ?',
            ],
            'where password' => [
                "SELECT id FROM users WHERE email = 'a@b.c' AND password = 'hunter2'",
                "SELECT id FROM users WHERE email = 'a@b.c' AND password = '[REDACTED]'",
            ],
            'update set then plain column' => [
                "UPDATE users SET api_token = 'tok''en', name = 'Bob' WHERE id = 1",
                "UPDATE users SET api_token = '[REDACTED]', name = 'Bob' WHERE id = 1",
            ],
            'function around the value' => [
                "UPDATE users SET password = crypt('hunter2', gen_salt('bf')) WHERE id = 7",
                "UPDATE users SET password = crypt('[REDACTED]', gen_salt('[REDACTED]')) WHERE id = 7",
            ],
            'in list' => [
                "DELETE FROM sessions WHERE session_id IN ('a1', 'b2') AND user_id = 3",
                "DELETE FROM sessions WHERE session_id IN ('[REDACTED]', '[REDACTED]') AND user_id = 3",
            ],
            'insert columns' => [
                "INSERT INTO users (email, password, name) VALUES ('a@b.c', 'hunter2', 'Ann'), ('d@e.f', 'pw2', 'Dan')",
                "INSERT INTO users (email, password, name) VALUES ('a@b.c', '[REDACTED]', 'Ann'), ('d@e.f', '[REDACTED]', 'Dan')",
            ],
            'insert quoted columns' => [
                "INSERT INTO \"public\".\"users\" (\"email\", \"secret_answer\") VALUES ('a@b.c', 'blue')",
                "INSERT INTO \"public\".\"users\" (\"email\", \"secret_answer\") VALUES ('a@b.c', '[REDACTED]')",
            ],
            'card in any literal' => [
                "INSERT INTO payments (note) VALUES ('paid with 4111-1111-1111-1111')",
                "INSERT INTO payments (note) VALUES ('[REDACTED]')",
            ],
            'key value inside a literal' => [
                "INSERT INTO audit (payload) VALUES ('{\"password\":\"x\"}')",
                "INSERT INTO audit (payload) VALUES ('[REDACTED]')",
            ],
            'escape string' => [
                "SELECT 1 FROM users WHERE token = E'ab\\'cd' AND id = 2",
                "SELECT 1 FROM users WHERE token = '[REDACTED]' AND id = 2",
            ],
            'unterminated literal at a cut' => [
                "SELECT 1 FROM users WHERE password = 'hunter",
                "SELECT 1 FROM users WHERE password = '[REDACTED]'",
            ],
            'sensitive table name only' => [
                "SELECT * FROM tokens WHERE kind = 'refresh'",
                "SELECT * FROM tokens WHERE kind = 'refresh'",
            ],
            'comment kept' => [
                "SELECT 1 FROM t WHERE password = 'x' /*endpoint='GET%20%2Flogin'*/",
                "SELECT 1 FROM t WHERE password = '[REDACTED]' /*endpoint='GET%20%2Flogin'*/",
            ],
        ];
    }

    /** @dataProvider statements */
    public function testSql(string $in, string $want): void
    {
        self::assertSame($want, (new Redactor())->sql($in));
    }

    /**
     * sqlUntouched() is the end message's shortcut past sql(): wherever it
     * says true, sql() must return the statement as it is, with or without
     * the agent's comment, and it must say true for the usual statement
     * (placeholders, the comment's quoted tags) without the precheck.
     */
    public function testSqlUntouchedOnlyWhereSqlChangesNothing(): void
    {
        $r = new Redactor();
        $comment = SqlCommenter::comment('GET /login/{password}');
        $old = SqlCommenter::comment('GET /other');
        $cases = [];
        foreach (self::statements() as [$in]) {
            $cases[] = [$in, ''];
            $cases[] = [$in, $comment];
            $cases[] = [SqlCommenter::apply($in, $comment), $comment];
            $cases[] = [SqlCommenter::apply($in . ';', $comment), $comment];
            $cases[] = [SqlCommenter::apply($in, $old), $comment];
        }
        $cases[] = ["SELECT \"a/*\", 'x' FROM users WHERE password = 'hunter2' " . $comment, $comment];
        $cases[] = ["SELECT 1 FROM users WHERE password = 'hunter2'" . $comment, $comment];
        $cases[] = [$comment, $comment];
        $cases[] = ["'", $comment];
        $cases[] = ['', $comment];
        $untouched = 0;
        foreach ($cases as [$sql, $c]) {
            if ($r->sqlUntouched($sql, $c)) {
                $untouched++;
                self::assertSame($sql, $r->sql($sql), "sqlUntouched() said true for: {$sql}");
            }
        }
        self::assertGreaterThan(5, $untouched, "the loop above must check some shortcuts");

        $plain = 'SELECT id FROM users WHERE password_hash = $1 AND api_token = ?';
        self::assertTrue($r->sqlUntouched($plain));
        self::assertTrue($r->sqlUntouched(SqlCommenter::apply($plain, $comment), $comment), 'the quotes of the own comment');
        self::assertTrue($r->sqlUntouched(SqlCommenter::apply($plain . ';', $comment), $comment), 'the own comment before a semicolon');
        // another endpoint's comment is not known as the agent's: the
        // precheck decides (and finds password_hash)
        self::assertFalse($r->sqlUntouched(SqlCommenter::apply($plain, $old), $comment));
        self::assertFalse($r->sqlUntouched("SELECT 1 FROM t WHERE password = 'x' " . $comment, $comment));
        self::assertFalse((new Redactor([], ['/ACME-\d{6}/']))->sqlUntouched('SELECT 1'), 'extra patterns always redact');
    }

    public function testConfiguredKeysAndPatterns(): void
    {
        $r = new Redactor(['otp'], ['/ACME-\d{6}/']);
        self::assertSame('login otp=[REDACTED] ok', $r->text('login otp=123456 ok'));
        self::assertSame('customer [REDACTED] not found', $r->text('customer ACME-123456 not found'));
        self::assertSame("UPDATE t SET otp_code = '[REDACTED]'", $r->sql("UPDATE t SET otp_code = '999'"));
        self::assertSame("SELECT '[REDACTED]'", $r->sql("SELECT 'ACME-123456'"));
        // the defaults stay
        self::assertSame('password=[REDACTED]', $r->text('password=x'));
        self::assertSame('otp=1', (new Redactor())->text('otp=1'));
    }

    public function testDefaultKeysPatternMatchesTheList(): void
    {
        self::assertSame(implode('|', array_map(static fn (string $k): string => preg_quote($k, '/'), Redactor::DEFAULT_KEYS)), Redactor::DEFAULT_KEYS_PATTERN);
    }

    /**
     * The prechecks' factored alternation matches where the flat list
     * does: each key, in any case, inside other text; and nothing else,
     * tried on every key cut short, lengthened or with one letter changed.
     */
    public function testThePrechecksFactoredKeysMatchTheList(): void
    {
        $flat = '/' . Redactor::DEFAULT_KEYS_PATTERN . '/i';
        $factored = '/' . Redactor::DEFAULT_KEYS_PRECHECK . '/i';
        $exact = '/^(?:' . Redactor::DEFAULT_KEYS_PRECHECK . ')$/i';
        $samples = [];
        foreach (Redactor::DEFAULT_KEYS as $k) {
            self::assertSame(1, preg_match($exact, $k), $k);
            self::assertSame(1, preg_match($exact, strtoupper($k)), $k);
            $samples[] = "SELECT x_{$k}_y FROM t";
            for ($i = 1; $i < strlen($k); $i++) {
                $samples[] = substr($k, 0, $i);
                $samples[] = substr($k, $i);
                foreach (['_', '-', 'x', 'e', 'a', 'v', 'c'] as $c) {
                    $samples[] = substr_replace($k, $c, $i, 1);
                    $samples[] = substr_replace($k, $c, $i, 0);
                }
            }
        }
        $matched = 0;
        foreach ($samples as $s) {
            $want = preg_match($flat, $s);
            self::assertSame($want, preg_match($factored, $s), $s);
            $matched += $want;
        }
        self::assertGreaterThan(50, $matched, 'the samples hold both matches');
        self::assertLessThan(count($samples) - 100, $matched, 'and misses');
        // the prechecks with extra keys still see the defaults and the extras
        $r = new Redactor(['otp']);
        self::assertSame('x password=[REDACTED] otp=[REDACTED]', $r->text('x password=1 otp=2'));
    }

    public function testLuhn(): void
    {
        foreach (['4111111111111111', '5555555555554444', '378282246310005', '6011111111111117', '4012888888881881'] as $valid) {
            self::assertTrue(Redactor::luhn($valid), $valid);
        }
        foreach (['4111111111111112', '1234567890123', '5555555555554445'] as $invalid) {
            self::assertFalse(Redactor::luhn($invalid), $invalid);
        }
    }

    public function testLongTextsStayFast(): void
    {
        $r = new Redactor();
        $sql = 'INSERT INTO t (password, v) VALUES ' . implode(', ', array_fill(0, 2000, "('p', 'v')"));
        $out = $r->sql($sql);
        self::assertSame(2000, substr_count($out, "('[REDACTED]', 'v')"));
        $text = str_repeat('token=abc ', 5000);
        self::assertSame(5000, substr_count($r->text($text), 'token=[REDACTED]'));
    }
}
