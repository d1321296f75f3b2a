<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Phalcon;

use Bitville\Apm\Agent;
use Bitville\Apm\Config;
use Bitville\Apm\Phalcon\RouterListener;
use Bitville\Apm\Runtime;
use Bitville\Apm\Tests\Support\MemoryTransport;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Doubles.php';

final class RouterListenerTest extends TestCase
{
    private Runtime $runtime;

    protected function setUp(): void
    {
        $c = Config::fromValues(['enabled' => '1', 'project' => 'shop', 'socket' => '/nonexistent', 'profiler' => 'off']);
        $this->runtime = Runtime::fromGlobals($c, ['REQUEST_METHOD' => 'POST', 'REQUEST_URI' => '/orders/42/items'], new MemoryTransport(), 'fpm-fcgi');
        Agent::setRuntime($this->runtime);
    }

    protected function tearDown(): void
    {
        Agent::setRuntime(null);
    }

    public function testMatchedRouteNamesTheEndpoint(): void
    {
        $em = new EventsManager();
        $em->attach('router', new RouterListener());
        $router = new Router($em);
        self::assertSame('POST /orders/{id}/items', Agent::endpoint(), 'the collapsed URI until the route is known');
        $router->handle([[new Route('/orders/{order:[0-9]+}/items'), true]]);
        self::assertSame('POST /orders/{order}/items', Agent::endpoint());
    }

    public function testRejectedCandidateIsNotKept(): void
    {
        $em = new EventsManager();
        $em->attach('router', new RouterListener());
        $router = new Router($em);
        $router->handle([[new Route('/orders/{id}/{rest:.*}'), false], [new Route('/orders/{id:\d+}/items'), true]]);
        self::assertSame('POST /orders/{id}/items', Agent::endpoint());
    }

    public function testNoRouteMatched(): void
    {
        $em = new EventsManager();
        $em->attach('router', new RouterListener());
        (new Router($em))->handle([]);
        self::assertSame('POST {unmatched}', Agent::endpoint());
    }

    public function testFromRouterWithoutEvents(): void
    {
        $router = new Router(new EventsManager());
        $router->handle([[new Route('/carts/{cart}'), true]]);
        RouterListener::fromRouter($router);
        self::assertSame('POST /carts/{cart}', Agent::endpoint());
        RouterListener::fromRouter(new \stdClass());
        self::assertSame('POST {unmatched}', Agent::endpoint());
    }

    public function testWithoutTheAgentNothingHappens(): void
    {
        Agent::setRuntime(null);
        $em = new EventsManager();
        $em->attach('router', new RouterListener());
        (new Router($em))->handle([[new Route('/x/{id}'), true]]);
        self::assertNull(Agent::endpoint());
    }
}
