<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * Turns messages into datagram payloads: JSON of at most 65,536 bytes.
 *
 * An end message that would be larger is cut in the order of
 * docs/protocol.md "Size and truncation", each step only as far as needed,
 * naming what it touched in `truncated`:
 *   1. `stacks`: the stacks with the fewest samples first;
 *   2. Messages::WALL_KEY (wall time by function): the entries with the
 *      least seconds first;
 *   3. `fn`: the functions with the least self time first;
 *   4. `sites`: the call-site table, with every statement's `site`;
 *   5. `sql.q`: statement texts cut to 1024 bytes, then to 256, each cut one
 *      marked "trunc";
 *   6. `sql`: the statements list cut to its first entries, the rest counted
 *      in sql_dropped;
 *   7. `errors.msg`: messages cut to 256 bytes, then `errors`: the list cut,
 *      the rest counted in errors_dropped.
 * Identity, timing, CPU, memory and status are never removed. The encoded
 * size is measured once per attempt; a list is cut by the exact encoded size
 * of its items, so each step encodes the message once more at most.
 */
final class Encoder
{
    public const MAX_BYTES = 65536;
    /** Entries of `truncated`. */
    public const MAX_TRUNCATED = 16;

    public const FLAGS = \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE
        | \JSON_PRESERVE_ZERO_FRACTION | \JSON_PARTIAL_OUTPUT_ON_ERROR;

    public function __construct(private readonly int $maxBytes = self::MAX_BYTES)
    {
    }

    /**
     * The payload of a message, or null when it cannot be made to fit (which
     * a message built by Messages never does).
     *
     * @param array<string, mixed> $m
     */
    public function encode(array $m): ?string
    {
        $json = self::json($m);
        if ($json !== null && self::needsCleaning($json)) {
            $m = self::cleanStrings($m);
            $json = self::json($m);
        }
        if ($json === null) {
            return null;
        }
        if (\strlen($json) <= $this->maxBytes) {
            return $json;
        }
        return match ($m['type'] ?? '') {
            'end' => $this->fitEnd($m, $json),
            'progress' => $this->fitProgress($m),
            default => null,
        };
    }

    /**
     * encode() with the default limit, for the usual message without an
     * Encoder: json_encode() alone when the message fits and no string
     * needs cleaning (Channel sends two a request), an Encoder otherwise.
     *
     * @param array<string, mixed> $m
     */
    public static function payload(array $m): ?string
    {
        $json = self::json($m);
        if ($json !== null && \strlen($json) <= self::MAX_BYTES && !self::needsCleaning($json)) {
            return $json;
        }
        return (new self())->encode($m);
    }

    /**
     * An escaped control character (\u00XX, \b, \f) or DEL in encoded
     * JSON: strings the daemon would reject. Escaped backslashes can match
     * too; then the strings are cleaned for nothing, which is harmless.
     */
    public static function needsCleaning(string $json): bool
    {
        return \str_contains($json, '\u00') || \str_contains($json, '\b') || \str_contains($json, '\f') || \str_contains($json, "\x7F");
    }

    /**
     * @param array<string, mixed> $m
     */
    private function fitEnd(array $m, string $json): ?string
    {
        $truncated = \is_array($m['truncated'] ?? null) ? $m['truncated'] : [];
        $mark = static function (string $field) use (&$truncated): void {
            if (!\in_array($field, $truncated, true) && \count($truncated) < self::MAX_TRUNCATED) {
                $truncated[] = $field;
            }
        };
        $over = fn (string $j): int => \strlen($j) - $this->maxBytes;

        // 1. stacks, fewest samples first
        if (!empty($m['stacks'])) {
            $stacks = $m['stacks'];
            \usort($stacks, static fn (array $a, array $b): int => $b['n'] <=> $a['n']);
            $m['stacks'] = $this->cutList($stacks, $over($json) + $this->markCost($truncated, 'stacks'), $removed);
            $mark('stacks');
            $m['truncated'] = $truncated;
            if (($json = $this->fits($m)) !== null) {
                return $json;
            }
            $json = (string) self::json($m);
        }
        // 2. wall time by function, least seconds first
        $wallKey = Messages::WALL_KEY;
        if (!empty($m[$wallKey])) {
            $wall = $m[$wallKey];
            \usort($wall, static fn (array $a, array $b): int => $b['s'] <=> $a['s']);
            $m[$wallKey] = $this->cutList($wall, $over($json) + $this->markCost($truncated, $wallKey), $removed);
            $mark($wallKey);
            $m['truncated'] = $truncated;
            if (($json = $this->fits($m)) !== null) {
                return $json;
            }
            $json = (string) self::json($m);
        }
        // 3. fn, least self time first
        if (!empty($m['fn'])) {
            $fn = $m['fn'];
            \usort($fn, static fn (array $a, array $b): int => $b['self'] <=> $a['self']);
            $m['fn'] = $this->cutList($fn, $over($json) + $this->markCost($truncated, 'fn'), $removed);
            $mark('fn');
            $m['truncated'] = $truncated;
            if (($json = $this->fits($m)) !== null) {
                return $json;
            }
            $json = (string) self::json($m);
        }
        // 4. the call sites: where a statement ran matters less than what it was
        if (isset($m['sites'])) {
            unset($m['sites']);
            foreach ($m['sql'] ?? [] as $i => $s) {
                unset($m['sql'][$i]['site']);
            }
            $mark('sites');
            $m['truncated'] = $truncated;
            if (($json = $this->fits($m)) !== null) {
                return $json;
            }
            $json = (string) self::json($m);
        }
        // 5. statement texts to 1024 bytes, then to 256
        if (!empty($m['sql'])) {
            foreach ([1024, 256] as $limit) {
                $changed = false;
                foreach ($m['sql'] as $i => $s) {
                    if (\strlen($s['q']) > $limit) {
                        $m['sql'][$i]['q'] = Text::cut($s['q'], $limit);
                        $m['sql'][$i]['trunc'] = true;
                        $changed = true;
                    }
                }
                if ($changed) {
                    $mark('sql.q');
                    $m['truncated'] = $truncated;
                    if (($json = $this->fits($m)) !== null) {
                        return $json;
                    }
                }
            }
            $json = (string) self::json($m);
            // 6. the statements list, its first entries kept
            $m['sql'] = $this->cutList($m['sql'], $over($json) + $this->markCost($truncated, 'sql') + 11, $removed);
            $m['sql_dropped'] = (int) ($m['sql_dropped'] ?? 0) + $removed;
            $mark('sql');
            $m['truncated'] = $truncated;
            if (($json = $this->fits($m)) !== null) {
                return $json;
            }
            $json = (string) self::json($m);
        }
        // 7. error messages to 256 bytes, then the list
        if (!empty($m['errors'])) {
            $changed = false;
            foreach ($m['errors'] as $i => $e) {
                if (isset($e['msg']) && \strlen($e['msg']) > 256) {
                    $m['errors'][$i]['msg'] = Text::cut($e['msg'], 256);
                    $changed = true;
                }
            }
            if ($changed) {
                $mark('errors.msg');
                $m['truncated'] = $truncated;
                if (($json = $this->fits($m)) !== null) {
                    return $json;
                }
                $json = (string) self::json($m);
            }
            $m['errors'] = $this->cutList($m['errors'], $over($json) + $this->markCost($truncated, 'errors') + 11, $removed);
            $m['errors_dropped'] = (int) ($m['errors_dropped'] ?? 0) + $removed;
            $mark('errors');
            $m['truncated'] = $truncated;
            if (($json = $this->fits($m)) !== null) {
                return $json;
            }
        }
        return null;
    }

    /**
     * A progress message can only be too large through its stack (128
     * frames of 512 bytes): frames are cut to 128 bytes, then the middle of
     * the stack is dropped, keeping the outermost and innermost frames.
     *
     * @param array<string, mixed> $m
     */
    private function fitProgress(array $m): ?string
    {
        $stack = \is_array($m['stack'] ?? null) ? $m['stack'] : [];
        $m['stack'] = \array_map(static fn (string $f): string => Text::cut($f, 128), $stack);
        if (($json = $this->fits($m)) !== null) {
            return $json;
        }
        if (\count($stack) > 16) {
            $m['stack'] = \array_merge(\array_slice($m['stack'], 0, 8), \array_slice($m['stack'], -8));
            return $this->fits($m);
        }
        return null;
    }

    /**
     * Removes items from the end of $list until at least $bytes of encoded
     * JSON are gone (an item costs its JSON and a comma).
     *
     * @param list<mixed> $list
     * @return list<mixed>
     */
    private function cutList(array $list, int $bytes, ?int &$removed): array
    {
        $removed = 0;
        $freed = 0;
        $n = \count($list);
        while ($n > 0 && $freed < $bytes) {
            $n--;
            $freed += \strlen((string) self::json($list[$n])) + 1;
            $removed++;
        }
        return \array_slice($list, 0, $n);
    }

    /** The bytes adding $field to `truncated` costs. @param list<string> $truncated */
    private function markCost(array $truncated, string $field): int
    {
        return \in_array($field, $truncated, true) ? 0 : \strlen($field) + 3;
    }

    /** @param array<string, mixed> $m */
    private function fits(array $m): ?string
    {
        $json = self::json($m);
        return $json !== null && \strlen($json) <= $this->maxBytes ? $json : null;
    }

    /** JSON with the protocol's flags and shortest round-trip floats. */
    public static function json(mixed $v): ?string
    {
        $precision = \ini_get('serialize_precision');
        if ($precision !== '-1') {
            \ini_set('serialize_precision', '-1');
        }
        $json = \json_encode($v, self::FLAGS);
        if ($precision !== '-1' && $precision !== false) {
            \ini_set('serialize_precision', $precision);
        }
        return \is_string($json) ? $json : null;
    }

    /**
     * @param array<mixed> $m
     * @return array<mixed>
     */
    private static function cleanStrings(array $m): array
    {
        \array_walk_recursive($m, static function (mixed &$v): void {
            if (\is_string($v)) {
                $v = Text::sanitize($v, \strlen($v));
            }
        });
        return $m;
    }
}
