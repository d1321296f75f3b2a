<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Encoder;
use Bitville\Apm\Messages;
use Bitville\Apm\Redactor;
use Bitville\Apm\RequestRecord;
use PHPUnit\Framework\TestCase;

/** The 64 KiB cap and the truncation order of docs/protocol.md "Size and truncation". */
final class EncoderTest extends TestCase
{
    private static function record(): RequestRecord
    {
        return new RequestRecord('5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90', 12345, 'shop', 'cid', 'GET', '/x', 'GET /x', 1764294512.1, 'fpm-fcgi', 'web-1', 'www');
    }

    /**
     * @param list<array{n: string, self: float, incl: float}> $fn
     * @param list<array{s: string, n: int}> $stacks
     * @return array<string, mixed>
     */
    private static function end(RequestRecord $r, array $fn = [], array $stacks = []): array
    {
        return (new Messages(new Redactor(), 8192))->end($r, 1764294513.0, 0, 0.9, 0.5, 0.1, 8 << 20, 200, ['fn' => $fn, 'stacks' => $stacks, 'period' => 0.01], 'excimer');
    }

    /** @return array<string, mixed> */
    private static function decode(?string $payload): array
    {
        self::assertNotNull($payload);
        self::assertLessThanOrEqual(Encoder::MAX_BYTES, strlen($payload));
        return json_decode($payload, true, 512, JSON_THROW_ON_ERROR);
    }

    /** @param array<string, mixed> $m */
    private static function assertIdentityKept(array $m): void
    {
        foreach (['v' => 2, 'type' => 'end', 'id' => '5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90', 'pid' => 12345, 'project' => 'shop', 'endpoint' => 'GET /x', 'method' => 'GET', 'status' => 200, 'wall' => 900000, 'cpu_user' => 500000, 'cpu_sys' => 100000, 'mem_peak' => 8 << 20] as $k => $v) {
            self::assertSame($v, $m[$k], "$k must never be removed");
        }
    }

    /** @return list<array{s: string, n: int}> */
    private static function stacks(int $count, int $len): array
    {
        $out = [];
        for ($i = 0; $i < $count; $i++) {
            $out[] = ['s' => sprintf('{main};f%03d;', $i) . str_repeat('g', $len), 'n' => $count - $i];
        }
        return $out;
    }

    /** @return list<array{n: string, self: float, incl: float}> */
    private static function functions(int $count, int $len): array
    {
        $out = [];
        for ($i = 0; $i < $count; $i++) {
            $out[] = ['n' => sprintf('f%03d_', $i) . str_repeat('h', $len), 'self' => ($count - $i) / 1000, 'incl' => 1.0];
        }
        return $out;
    }

    public function testSmallMessageUntouched(): void
    {
        $m = self::end(self::record(), self::functions(3, 5), self::stacks(3, 5));
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame([], $out['truncated']);
        self::assertCount(3, $out['fn']);
        self::assertCount(3, $out['stacks']);
    }

    public function testStacksGoFirstFewestSamplesFirst(): void
    {
        $m = self::end(self::record(), self::functions(10, 10), self::stacks(200, 500));
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame(['stacks'], $out['truncated']);
        self::assertNotEmpty($out['stacks']);
        self::assertLessThan(200, count($out['stacks']));
        // the kept ones are the heaviest, in order
        foreach ($out['stacks'] as $i => $s) {
            self::assertSame(200 - $i, $s['n']);
        }
        self::assertCount(10, $out['fn']);
        // cut only as far as needed: one more stack would not fit
        $next = ['s' => sprintf('{main};f%03d;', count($out['stacks'])) . str_repeat('g', 500), 'n' => 1];
        self::assertGreaterThan(Encoder::MAX_BYTES, strlen((string) Encoder::json($out)) + strlen((string) Encoder::json($next)) + 1);
    }

    public function testFunctionsGoSecondLeastSelfFirst(): void
    {
        $fn = self::functions(500, 200);
        shuffle($fn);
        $m = self::end(self::record(), $fn, self::stacks(50, 100));
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame(['stacks', 'fn'], $out['truncated']);
        self::assertSame([], $out['stacks']);
        self::assertNotEmpty($out['fn']);
        $selfs = array_column($out['fn'], 'self');
        self::assertSame(500000, $selfs[0], 'the heaviest function is kept');
        $sorted = $selfs;
        rsort($sorted);
        self::assertSame($sorted, $selfs);
    }

    public function testWallTimeGoesBetweenStacksAndFunctionsLeastSecondsFirst(): void
    {
        $wall = [];
        for ($i = 0; $i < Messages::MAX_WALL; $i++) {
            $wall[] = ['n' => sprintf('w%03d_', $i) . str_repeat('h', 150), 'c' => 'App\\Caller', 's' => (Messages::MAX_WALL - $i) / 1000];
        }
        shuffle($wall);
        $m = (new Messages(new Redactor(), 8192))->end(self::record(), 1764294513.0, 0, 0.9, 0.5, 0.1, 8 << 20, 200,
            ['fn' => self::functions(10, 10), 'stacks' => self::stacks(50, 100), 'period' => 0.01, 'wall' => $wall], 'excimer');
        self::assertCount(Messages::MAX_WALL, $m[Messages::WALL_KEY]);
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame(['stacks', Messages::WALL_KEY], $out['truncated']);
        self::assertSame([], $out['stacks']);
        self::assertCount(10, $out['fn'], 'fn is untouched');
        $seconds = array_column($out[Messages::WALL_KEY], 's');
        self::assertNotEmpty($seconds);
        self::assertLessThan(Messages::MAX_WALL, count($seconds));
        self::assertSame(500000, $seconds[0], 'the heaviest entry is kept');
        $sorted = $seconds;
        rsort($sorted);
        self::assertSame($sorted, $seconds);
        self::assertIdentityKept($out);
    }

    public function testSqlTextsThenTheList(): void
    {
        $r = self::record();
        for ($i = 0; $i < 40; $i++) {
            $r->addSql(sprintf('SELECT %d, ', $i) . str_repeat('x', 3000), 0.001, 1);
        }
        $out = self::decode((new Encoder())->encode(self::end($r)));
        self::assertSame(['sql.q'], $out['truncated']);
        self::assertCount(40, $out['sql']);
        foreach ($out['sql'] as $i => $s) {
            self::assertLessThanOrEqual(1024, strlen($s['q']));
            self::assertTrue($s['trunc']);
            self::assertStringStartsWith("SELECT $i, ", $s['q']);
        }

        $r = self::record();
        for ($i = 0; $i < 150; $i++) {
            $r->addSql(sprintf('SELECT %d, ', $i) . str_repeat('x', 3000), 0.001, 1);
        }
        $out = self::decode((new Encoder())->encode(self::end($r)));
        self::assertSame(['sql.q'], $out['truncated'], '256 bytes each is enough for 150');
        foreach ($out['sql'] as $s) {
            self::assertLessThanOrEqual(256, strlen($s['q']));
        }

        $r = self::record();
        for ($i = 0; $i < 500; $i++) {
            $r->addSql(sprintf('SELECT %d, ', $i) . str_repeat('x', 3000), 0.001, 1);
        }
        for ($i = 0; $i < 30; $i++) {
            $r->addSql('SELECT past the cap', 0.001);
        }
        $out = self::decode((new Encoder())->encode(self::end($r)));
        self::assertSame(['sql.q', 'sql'], $out['truncated']);
        $kept = count($out['sql']);
        self::assertGreaterThan(100, $kept);
        self::assertLessThan(500, $kept);
        self::assertSame(530 - $kept, $out['sql_dropped'], 'the cut statements are counted with those past the cap');
        foreach ($out['sql'] as $i => $s) {
            self::assertStringStartsWith("SELECT $i, ", $s['q'], 'the first statements are kept');
        }
    }

    /** The call sites go before any statement text is cut, with every statement's index. */
    public function testSitesGoBeforeStatementTexts(): void
    {
        $r = self::record();
        for ($i = 0; $i < 40; $i++) {
            $site = $r->addSite(array_fill(0, 8, sprintf('/srv/app/%03d/', $i) . str_repeat('d', 900) . '.php:1 f'));
            $r->addSql(sprintf('SELECT %d, ', $i) . str_repeat('x', 600), 0.001, 1, false, $site);
        }
        $m = self::end($r);
        self::assertGreaterThan(Encoder::MAX_BYTES, strlen((string) Encoder::json($m)));
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame(['sites'], $out['truncated']);
        self::assertArrayNotHasKey('sites', $out);
        self::assertCount(40, $out['sql']);
        foreach ($out['sql'] as $i => $s) {
            self::assertArrayNotHasKey('site', $s);
            self::assertArrayNotHasKey('trunc', $s, 'statement texts are untouched while dropping the sites is enough');
            self::assertStringStartsWith("SELECT $i, ", $s['q']);
        }

        // after fn, before sql.q
        $r = self::record();
        for ($i = 0; $i < 40; $i++) {
            $r->addSql(sprintf('SELECT %d, ', $i) . str_repeat('x', 3000), 0.001, 1, false, $r->addSite(["/srv/app/a.php:$i f"]));
        }
        $out = self::decode((new Encoder())->encode(self::end($r, self::functions(500, 400))));
        self::assertSame(['fn', 'sites', 'sql.q'], $out['truncated']);
        self::assertArrayNotHasKey('sites', $out);
        self::assertArrayNotHasKey('site', $out['sql'][0]);
        self::assertIdentityKept($out);
    }

    public function testErrorsLast(): void
    {
        $r = self::record();
        for ($i = 0; $i < 500; $i++) {
            $r->addSql(sprintf('SELECT %d, ', $i) . str_repeat('x', 300), 0.001, 1);
        }
        for ($i = 0; $i < 60; $i++) {
            $r->addError('E_WARNING', sprintf('warning %d ', $i) . str_repeat('w', 3000), '/srv/app/' . str_repeat('d', 1000) . '.php', $i);
        }
        $out = self::decode((new Encoder())->encode(self::end($r, self::functions(500, 400), self::stacks(200, 2000))));
        self::assertSame(['stacks', 'fn', 'sql.q', 'sql', 'errors.msg', 'errors'], $out['truncated']);
        self::assertSame([], $out['sql']);
        self::assertSame(500, $out['sql_dropped']);
        self::assertLessThan(50, count($out['errors']));
        self::assertSame(60 - count($out['errors']), $out['errors_dropped']);
        foreach ($out['errors'] as $i => $e) {
            self::assertLessThanOrEqual(256, strlen($e['msg']));
            self::assertStringStartsWith("warning $i ", $e['msg']);
        }
        self::assertIdentityKept($out);
    }

    /** Huge inputs of every kind at once: the result always fits and stays valid. */
    public function testHugeEverything(): void
    {
        $r = new RequestRecord(str_repeat('a', 32), 1, 'shop', str_repeat('c', 128), 'GET', '/' . str_repeat('u', 2047), 'GET /' . str_repeat('e', 251), 1764294512.1, 'fpm-fcgi', str_repeat('h', 255), str_repeat('p', 64));
        for ($i = 0; $i < 600; $i++) {
            $r->addSql(str_repeat("SELECT 'ü€', ", 1000), 0.001, 1);
            $r->addError('E_NOTICE', str_repeat('€', 2000), '/f.php', 1);
        }
        $fn = [];
        for ($i = 0; $i < 700; $i++) {
            $fn[] = ['n' => str_repeat('€', 300), 'self' => 0.001, 'incl' => 0.002, 'calls' => 3];
        }
        $stacks = [];
        for ($i = 0; $i < 300; $i++) {
            $stacks[] = ['s' => str_repeat('ü;', 5000), 'n' => 2];
        }
        $m = (new Messages(new Redactor(), 8192))->end($r, 1764294513.0, 0, 0.9, 0.5, 0.1, 1 << 30, 500, ['fn' => $fn, 'stacks' => $stacks, 'period' => 0.01], 'excimer');
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame(1, preg_match('//u', (string) json_encode($out, JSON_UNESCAPED_UNICODE)));
        self::assertSame(600, $out['sql_dropped'] + count($out['sql']), 'every statement is listed or counted');
        self::assertSame(600, $out['errors_dropped'] + count($out['errors']), 'every error is listed or counted');
        self::assertLessThanOrEqual(16, count($out['truncated']));
        foreach ($out['fn'] as $f) {
            self::assertLessThanOrEqual(512, strlen($f['n']));
        }
    }

    public function testProgressWithAHugeStackFits(): void
    {
        $stack = [];
        for ($i = 0; $i < 300; $i++) {
            $stack[] = sprintf('F%03d', $i) . str_repeat('x', 1000);
        }
        $m = (new Messages(new Redactor()))->progress(self::record(), 1764294513.0, 0, 1.0, 1, 100, 0.5, $stack);
        self::assertCount(128, $m['stack']);
        $out = self::decode((new Encoder())->encode($m));
        self::assertSame('F172', substr($out['stack'][0], 0, 4), 'the innermost 128 frames are sent');
        self::assertSame('F299', substr($out['stack'][count($out['stack']) - 1], 0, 4));
    }

    public function testControlCharactersFromTheProfilerAreReplaced(): void
    {
        $fn = [['n' => "class@anonymous\0/srv/app.php:12\$0::run", 'self' => 0.01, 'incl' => 0.02]];
        $stacks = [['s' => "{main};class@anonymous\0/srv/app.php:12\$0::run\x7f", 'n' => 1]];
        $out = self::decode((new Encoder())->encode(self::end(self::record(), $fn, $stacks)));
        self::assertSame('class@anonymous?/srv/app.php:12$0::run', $out['fn'][0]['n']);
        self::assertSame('{main};class@anonymous?/srv/app.php:12$0::run?', $out['stacks'][0]['s']);
    }

    public function testSerializePrecisionOfTheApplicationDoesNotLeak(): void
    {
        $old = ini_get('serialize_precision');
        ini_set('serialize_precision', '17');
        try {
            $json = Encoder::json(['d' => 0.1]);
            self::assertSame(17, (int) ini_get('serialize_precision'));
        } finally {
            ini_set('serialize_precision', (string) $old);
        }
        self::assertSame('{"d":0.1}', $json);
    }

    public function testNonFiniteNumbersDoNotBreakEncoding(): void
    {
        $payload = (new Encoder())->encode(['v' => 1, 'type' => 'progress', 'x' => NAN, 'y' => INF]);
        self::assertNotNull($payload);
        self::assertSame(['v' => 1, 'type' => 'progress', 'x' => 0, 'y' => 0], json_decode((string) $payload, true));
    }
}
