<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Ids;
use PHPUnit\Framework\TestCase;

final class IdsTest extends TestCase
{
    public function testIncomingCorrelationId(): void
    {
        self::assertSame('req-42.abc_DEF:9', Ids::incoming(['HTTP_X_CORRELATION_ID' => 'req-42.abc_DEF:9']));
        self::assertSame('0af7651916cd43dd8448eb211c80319c', Ids::incoming(['HTTP_TRACEPARENT' => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']));
        // X-Correlation-ID wins over traceparent
        self::assertSame('abc', Ids::incoming(['HTTP_X_CORRELATION_ID' => 'abc', 'HTTP_TRACEPARENT' => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']));
        // insane ids fall through to traceparent, then to nothing
        self::assertSame('0af7651916cd43dd8448eb211c80319c', Ids::incoming(['HTTP_X_CORRELATION_ID' => "a\r\nSet-Cookie: x", 'HTTP_TRACEPARENT' => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']));
        self::assertNull(Ids::incoming(['HTTP_X_CORRELATION_ID' => str_repeat('a', 129)]));
        self::assertNull(Ids::incoming(['HTTP_X_CORRELATION_ID' => '']));
        self::assertNull(Ids::incoming(['HTTP_X_CORRELATION_ID' => 'has space']));
        self::assertNull(Ids::incoming([]));
    }

    /** @return array<string, array{string, ?string}> */
    public static function traceparents(): array
    {
        return [
            'valid' => ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '4bf92f3577b34da6a3ce929d0e0e4736'],
            'not sampled' => ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', '4bf92f3577b34da6a3ce929d0e0e4736'],
            'future version with more' => ['cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what', '4bf92f3577b34da6a3ce929d0e0e4736'],
            'version 00 with more' => ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what', null],
            'version ff' => ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', null],
            'zero trace id' => ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', null],
            'zero parent id' => ['00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', null],
            'upper case' => ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', null],
            'short' => ['00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', null],
            'garbage' => ['hello', null],
        ];
    }

    /** @dataProvider traceparents */
    public function testTraceId(string $header, ?string $want): void
    {
        self::assertSame($want, Ids::traceId($header));
    }

    public function testUuid4(): void
    {
        $seen = [];
        for ($i = 0; $i < 100; $i++) {
            $u = Ids::uuid4(random_bytes(16));
            self::assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', $u);
            $seen[$u] = true;
        }
        self::assertCount(100, $seen);
        self::assertSame('00000000-0000-4000-8000-000000000000', Ids::uuid4(str_repeat("\0", 16)));
        self::assertSame('ffffffff-ffff-4fff-bfff-ffffffffffff', Ids::uuid4(str_repeat("\xff", 16)));
    }
}
