<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Endpoint;
use PHPUnit\Framework\TestCase;

final class EndpointTest extends TestCase
{
    /** @return array<string, array{string, string}> */
    public static function uris(): array
    {
        return [
            'root' => ['/', '/'],
            'static' => ['/cheap', '/cheap'],
            'numeric id' => ['/orders/12345', '/orders/{id}'],
            'query dropped' => ['/orders/12345?expand=items&token=x', '/orders/{id}'],
            'fragment dropped' => ['/docs/7#section', '/docs/{id}'],
            'several ids' => ['/users/7/orders/99/items', '/users/{id}/orders/{id}/items'],
            'uuid' => ['/users/0af76519-16cd-43dd-8448-eb211c80319c/profile', '/users/{uuid}/profile'],
            'uuid upper' => ['/users/0AF76519-16CD-43DD-8448-EB211C80319C', '/users/{uuid}'],
            'hash' => ['/files/d41d8cd98f00b204e9800998ecf8427e', '/files/{hash}'],
            'sha256' => ['/blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/raw', '/blobs/{hash}/raw'],
            'short hex kept' => ['/colors/ff00ff', '/colors/ff00ff'],
            'version kept' => ['/api/v2/orders', '/api/v2/orders'],
            'mixed segment kept' => ['/orders/123.json', '/orders/123.json'],
            'trailing slash' => ['/orders/5/', '/orders/{id}/'],
            'empty' => ['', '/'],
            'absolute form' => ['http://shop.example/orders/5?x', '/orders/{id}'],
        ];
    }

    /** @dataProvider uris */
    public function testRouteFromUri(string $uri, string $want): void
    {
        self::assertSame($want, (new Endpoint())->route(Endpoint::path($uri)));
    }

    public function testRulesApplyInOrderToTheCollapsedPath(): void
    {
        $e = new Endpoint([
            ['#^/shop/[^/]+/cart$#', '/shop/{slug}/cart'],
            ['#^/orders/\{id\}$#', '/orders/:id'],
            ['#^/u/([a-z]+)$#', '/u/{name}'],
        ]);
        self::assertSame('/shop/{slug}/cart', $e->route('/shop/red-shoes/cart'));
        self::assertSame('/orders/:id', $e->route('/orders/42'));
        self::assertSame('/u/{name}', $e->route('/u/alice'));
        self::assertSame('/other', $e->route('/other'));
    }

    public function testJoin(): void
    {
        self::assertSame('GET /orders/{id}', Endpoint::join('GET', '/orders/{id}'));
        self::assertSame('CLI bin/cron/reindex.php', Endpoint::join('CLI', 'bin/cron/reindex.php'));
        $long = Endpoint::join('GET', '/' . str_repeat('x', 1000));
        self::assertSame(Endpoint::MAX_BYTES, strlen($long));
        self::assertSame('GET /a?b', Endpoint::join('GET', "/a\x00b"));
    }

    public function testMethod(): void
    {
        self::assertSame('GET', Endpoint::method('get'));
        self::assertSame('PROPFIND', Endpoint::method('PROPFIND'));
        self::assertSame('OTHER', Endpoint::method("GET\r\nX: y"));
        self::assertSame('OTHER', Endpoint::method(''));
        self::assertSame('OTHER', Endpoint::method(str_repeat('A', 17)));
    }

    /** @return array<string, array{string, string}> */
    public static function phalconPatterns(): array
    {
        return [
            'plain' => ['/orders', '/orders'],
            'named' => ['/orders/{id}', '/orders/{id}'],
            'named regex' => ['/orders/{id:[0-9]+}', '/orders/{id}'],
            'regex with braces' => ['/archive/{year:[0-9]{4}}/{slug:[a-z\-]+}', '/archive/{year}/{slug}'],
            'escaped brace' => ['/x/{a:\{[0-9]+}', '/x/{a}'],
            'placeholders kept' => ['/:controller/:action/:params', '/:controller/:action/:params'],
            'raw group kept' => ['/products/([0-9]+)', '/products/([0-9]+)'],
            'unclosed' => ['/broken/{id', '/broken/{id'],
        ];
    }

    /** @dataProvider phalconPatterns */
    public function testFromPhalconPattern(string $pattern, string $want): void
    {
        self::assertSame($want, Endpoint::fromPhalconPattern($pattern));
    }
}
