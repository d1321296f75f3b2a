<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * Names the operation of a request, "METHOD route": the route pattern when
 * the framework knows it (Agent::setEndpoint, the Phalcon router listener),
 * else the URI path with the query string dropped and ids collapsed:
 * numeric segments become {id}, UUIDs {uuid}, hex strings of 16 or more
 * characters {hash}; then the configured endpoint_rules rewrite the result,
 * in order. CLI scripts are "CLI <script>". The endpoint becomes a metric
 * label, so it must be stable per route and bounded.
 */
final class Endpoint
{
    /** The daemon's limit for the endpoint field. */
    public const MAX_BYTES = 256;
    /** Bytes of a method. */
    public const MAX_METHOD_BYTES = 16;

    private const COLLAPSE = [
        '#(?<=/)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)#',
        '#(?<=/)\d+(?=/|$)#',
        '#(?<=/)[0-9a-fA-F]{16,}(?=/|$)#',
    ];
    private const COLLAPSE_TO = ['{uuid}', '{id}', '{hash}'];

    /** Methods that method() returns as they are. */
    private const USUAL_METHODS = ['GET' => true, 'POST' => true, 'PUT' => true, 'PATCH' => true, 'DELETE' => true, 'HEAD' => true, 'OPTIONS' => true];

    /**
     * @param list<array{string, string}> $rules regex => replacement, applied in order to the collapsed path
     */
    public function __construct(private readonly array $rules = [])
    {
    }

    /** The path of a request URI: query string and fragment dropped, never empty. */
    public static function path(string $uri): string
    {
        $path = \substr($uri, 0, \strcspn($uri, '?#'));
        if ($path === '' || $path[0] !== '/') {
            // absolute-form request targets (http://host/path) and garbage
            $p = \parse_url($uri, \PHP_URL_PATH);
            $path = \is_string($p) && $p !== '' ? $p : '/';
            if ($path[0] !== '/') {
                $path = '/' . $path;
            }
        }
        return $path;
    }

    /** The collapsed and rewritten route of a path (no method). */
    public function route(string $path): string
    {
        return self::routeWith($this->rules, $path);
    }

    /**
     * route() without an object, for the agent's start.
     *
     * @param list<array{string, string}> $rules
     */
    public static function routeWith(array $rules, string $path): string
    {
        if (\strpbrk($path, '0123456789') !== false) {
            $path = (string) \preg_replace(self::COLLAPSE, self::COLLAPSE_TO, $path);
        }
        foreach ($rules as [$re, $replacement]) {
            $r = \preg_replace($re, $replacement, $path);
            if (\is_string($r)) {
                $path = $r;
            }
        }
        return $path;
    }

    /** "METHOD route", sanitized and cut to the daemon's limit. */
    public static function join(string $method, string $route): string
    {
        return Text::sanitize($method . ' ' . $route, self::MAX_BYTES);
    }

    /** An HTTP method as sent: upper case, at most 16 bytes of letters, digits, - and _; "OTHER" otherwise. */
    public static function method(string $method): string
    {
        if (isset(self::USUAL_METHODS[$method])) {
            return $method; // as nearly every request sends it: nothing to change or test
        }
        $m = \strtoupper($method);
        return \preg_match('/^[A-Z0-9_-]{1,' . self::MAX_METHOD_BYTES . '}$/', $m) === 1 ? $m : 'OTHER';
    }

    /**
     * A Phalcon route pattern as a stable route: "{id:[0-9]+}" becomes
     * "{id}" (the regex of a named placeholder is dropped, braces inside it
     * counted); everything else is kept.
     */
    public static function fromPhalconPattern(string $pattern): string
    {
        if (!\str_contains($pattern, '{')) {
            return $pattern;
        }
        $out = '';
        $n = \strlen($pattern);
        for ($i = 0; $i < $n; $i++) {
            $c = $pattern[$i];
            if ($c !== '{') {
                $out .= $c;
                continue;
            }
            $end = \strcspn($pattern, ':}', $i + 1) + $i + 1;
            if ($end >= $n) {
                $out .= \substr($pattern, $i);
                break;
            }
            $name = \substr($pattern, $i + 1, $end - $i - 1);
            if ($pattern[$end] === '}') {
                $out .= '{' . $name . '}';
                $i = $end;
                continue;
            }
            // skip the regex up to the brace that closes the placeholder
            $depth = 1;
            $j = $end + 1;
            for (; $j < $n && $depth > 0; $j++) {
                if ($pattern[$j] === '\\') {
                    $j++;
                } elseif ($pattern[$j] === '{') {
                    $depth++;
                } elseif ($pattern[$j] === '}') {
                    $depth--;
                }
            }
            $out .= '{' . $name . '}';
            $i = $j - 1;
        }
        return $out;
    }
}
