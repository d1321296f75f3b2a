<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * Request and correlation ids. The request id is 32 hex characters; the
 * correlation id is the incoming X-Correlation-ID when it is sane (1-128
 * characters of letters, digits and . _ : / + = @ -), else the trace id of a
 * valid W3C traceparent header, else a fresh UUIDv4.
 */
final class Ids
{
    private function __construct()
    {
    }

    /** The correlation id a request arrived with, or null. @param array<string, mixed> $server */
    public static function incoming(array $server): ?string
    {
        $cid = $server['HTTP_X_CORRELATION_ID'] ?? null;
        if (\is_string($cid) && \preg_match('/^[A-Za-z0-9._:\/+=@-]{1,' . Messages::MAX_CID . '}$/', $cid) === 1) {
            return $cid;
        }
        $tp = $server['HTTP_TRACEPARENT'] ?? null;
        return \is_string($tp) ? self::traceId($tp) : null;
    }

    /**
     * The trace id of a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>"), or
     * null when the header is invalid: version ff, all-zero ids, upper case,
     * or version 00 with trailing data. Later versions may append fields.
     */
    public static function traceId(string $traceparent): ?string
    {
        $tp = \trim($traceparent);
        if (\preg_match('/^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/', $tp, $m) !== 1) {
            return null;
        }
        if ($m[1] === 'ff' || ($m[1] === '00' && isset($m[5]) && $m[5] !== '')) {
            return null;
        }
        if ($m[2] === \str_repeat('0', 32) || $m[3] === \str_repeat('0', 16)) {
            return null;
        }
        return $m[2];
    }

    /** A UUIDv4 (RFC 9562) from 16 random bytes. */
    public static function uuid4(string $random16): string
    {
        // The version nibble (4) and the variant bits (10xx) written into
        // the hex digits: cheaper than editing the bytes (this runs on
        // every request without an incoming correlation id).
        $h = \bin2hex(\substr($random16, 0, 16));
        $h[12] = '4';
        $h[16] = '89ab'[\ord($random16[8]) >> 4 & 3];
        // The dashes in one call, not five substr().
        return (string) \preg_replace('/^(.{8})(.{4})(.{4})(.{4})/', '$1-$2-$3-$4-', $h);
    }
}
