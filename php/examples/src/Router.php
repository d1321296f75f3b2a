<?php

declare(strict_types=1);

namespace App;

/**
 * A small front-controller router: patterns like /orders/{id} with
 * digit-only parameters. When a route matches, the route pattern is given
 * to the APM agent (if loaded), so the endpoint is named after the route,
 * not after the URI.
 */
final class Router
{
    /** @var list<array{string, string, string, callable(array<string, string>): Response}> */
    private array $routes = [];

    /** @param callable(array<string, string>): Response $handler */
    public function add(string $method, string $pattern, callable $handler): void
    {
        $regex = '#^' . preg_replace('#\\\\\{([a-z_]+)\\\\\}#', '(?P<$1>[0-9]+)', preg_quote($pattern, '#')) . '$#';
        $this->routes[] = [$method, $pattern, $regex, $handler];
    }

    public function dispatch(string $method, string $uri): Response
    {
        $path = parse_url($uri, PHP_URL_PATH);
        if (!is_string($path)) {
            return Response::json(400, ['error' => 'bad request']);
        }
        $allowed = [];
        foreach ($this->routes as [$routeMethod, $pattern, $regex, $handler]) {
            if (preg_match($regex, $path, $m) !== 1) {
                continue;
            }
            if ($routeMethod !== $method) {
                $allowed[] = $routeMethod;
                continue;
            }
            if (class_exists(\Bitville\Apm\Agent::class)) {
                \Bitville\Apm\Agent::setEndpoint($pattern);
            }
            $params = array_filter($m, 'is_string', ARRAY_FILTER_USE_KEY);
            return $handler($params);
        }
        if ($allowed !== []) {
            return Response::json(405, ['error' => 'method not allowed'], ['Allow' => implode(', ', $allowed)]);
        }
        return Response::json(404, ['error' => 'not found']);
    }
}
