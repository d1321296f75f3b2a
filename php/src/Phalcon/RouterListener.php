<?php

declare(strict_types=1);

namespace Bitville\Apm\Phalcon;

use Bitville\Apm\Agent;
use Bitville\Apm\Endpoint;

/**
 * Names requests after the Phalcon route they matched: "GET /orders/{id}"
 * for a route added as "/orders/{id:[0-9]+}" (the placeholder's regex is
 * dropped). Attach it to the router's events manager:
 *
 * ```php
 * $em->attach('router', new \Bitville\Apm\Phalcon\RouterListener());
 * $router->setEventsManager($em);
 * ```
 *
 * or, without events, call RouterListener::fromRouter($router) after
 * $router->handle($uri).
 *
 * router:matchedRoute fires for every route whose pattern matches, before
 * its beforeMatch callback may still reject it; router:afterCheckRoutes then
 * reads the route finally chosen, $router->getMatchedRoute(). When no route
 * matched, the endpoint is "METHOD {unmatched}": 404s from scanners must not
 * create one endpoint per URI.
 *
 * Written against Phalcon's documented Router API (getMatchedRoute(),
 * RouteInterface::getPattern()); Phalcon cannot be installed here, so the
 * tests use test doubles of it.
 */
final class RouterListener
{
    public const UNMATCHED = '{unmatched}';

    public function matchedRoute(object $event, object $router, mixed $route = null): void
    {
        try {
            if (\is_object($route)) {
                self::useRoute($route);
            }
        } catch (\Throwable) {
        }
    }

    public function afterCheckRoutes(object $event, object $router, mixed $data = null): void
    {
        try {
            self::fromRouter($router);
        } catch (\Throwable) {
        }
    }

    /** Sets the endpoint from a router that has handled the request. Never throws. */
    public static function fromRouter(object $router): void
    {
        try {
            $route = \method_exists($router, 'getMatchedRoute') ? $router->getMatchedRoute() : null;
            if (\is_object($route)) {
                self::useRoute($route);
            } else {
                Agent::setEndpoint(self::UNMATCHED);
            }
        } catch (\Throwable) {
        }
    }

    private static function useRoute(object $route): void
    {
        $pattern = \method_exists($route, 'getPattern') ? $route->getPattern() : null;
        if (\is_string($pattern) && $pattern !== '') {
            Agent::setEndpoint(Endpoint::fromPhalconPattern($pattern));
        }
    }
}
