<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * sqlcommenter-style tags (https://google.github.io/sqlcommenter/spec/) that
 * the agent appends to statements sent to PostgreSQL, so that the
 * pg-exporter can attribute database time to an endpoint: a C-style comment
 * holding endpoint='GET%20%2Forders%2F%7Bid%7D' at the end of the statement
 * (testdata/protocol/end.json shows the exact form). Keys are sorted, values
 * URL-encoded (RFC 3986), which also keeps the comment terminator and quotes
 * out of the values. The endpoint tag is stable per route, so statement caches
 * keep working; correlation_id makes every text unique and is off by
 * default.
 */
final class SqlCommenter
{
    private function __construct()
    {
    }

    /** The comment for an endpoint and, optionally, a correlation id. */
    public static function comment(string $endpoint, ?string $correlationId = null): string
    {
        $tags = [];
        if ($correlationId !== null && $correlationId !== '') {
            $tags[] = "correlation_id='" . \rawurlencode($correlationId) . "'";
        }
        $tags[] = "endpoint='" . \rawurlencode($endpoint) . "'";
        return '/*' . \implode(',', $tags) . '*/';
    }

    /**
     * $sql with $comment appended (before a trailing semicolon). A statement
     * that already carries a comment (or might: "/*" or "--" anywhere) is
     * returned unchanged, so nothing is tagged twice.
     */
    public static function apply(string $sql, string $comment): string
    {
        if ($comment === '' || \str_contains($sql, '/*') || \str_contains($sql, '--')) {
            return $sql;
        }
        $body = \rtrim($sql);
        if ($body === '') {
            return $sql;
        }
        if ($body[-1] === ';') {
            return \rtrim(\substr($body, 0, -1)) . ' ' . $comment . ';';
        }
        return $body . ' ' . $comment;
    }
}
