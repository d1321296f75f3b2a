<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

/** The golden protocol messages under testdata/protocol (shared with the Go daemon's tests). */
final class Golden
{
    public static function dir(): string
    {
        return dirname(__DIR__, 3) . '/testdata/protocol';
    }

    /** @return array<string, mixed> */
    public static function load(string $name): array
    {
        $path = self::dir() . '/' . $name . '.json';
        $raw = file_get_contents($path);
        if ($raw === false) {
            throw new \RuntimeException("cannot read $path");
        }
        return json_decode($raw, true, 512, JSON_THROW_ON_ERROR);
    }

    /**
     * $v with the keys of every JSON object sorted, so two messages compare
     * by keys, types and values, not by key order.
     */
    public static function normalize(mixed $v): mixed
    {
        if (!is_array($v)) {
            return $v;
        }
        $v = array_map([self::class, 'normalize'], $v);
        if (!array_is_list($v)) {
            ksort($v);
        }
        return $v;
    }
}
