<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * String helpers for everything that leaves the process: the daemon rejects a
 * whole message whose strings are not valid UTF-8, contain control characters
 * other than tab, CR and LF, or are longer than their byte limit
 * (docs/protocol.md), so every untrusted string goes through sanitize().
 */
final class Text
{
    /** Control characters the daemon rejects: all below 0x20 except tab, LF, CR, and DEL. */
    private const CONTROL = '/[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]/';

    /** Anything but printable ASCII, tab, CR and LF: the strings sanitize() has work to do on. */
    public const UNUSUAL = '/[^\x20-\x7E\t\r\n]/';

    private function __construct()
    {
    }

    /**
     * Returns $s as valid UTF-8 without rejected control characters (each
     * replaced by '?'), cut to at most $max bytes on a character boundary.
     * Printable ASCII, the common case, costs one regex test and a strlen.
     */
    public static function sanitize(string $s, int $max): string
    {
        if (\preg_match(self::UNUSUAL, $s) === 1) {
            if (\preg_match('//u', $s) !== 1) {
                $s = self::scrub($s);
            }
            $s = (string) \preg_replace(self::CONTROL, '?', $s);
        }
        return \strlen($s) > $max ? self::cut($s, $max) : $s;
    }

    /** True when $s is valid UTF-8 without control characters the daemon rejects. */
    public static function isClean(string $s): bool
    {
        return \preg_match('//u', $s) === 1 && \preg_match(self::CONTROL, $s) !== 1;
    }

    /**
     * Cuts valid UTF-8 $s to at most $max bytes without splitting a
     * character: the cut backs off over continuation bytes.
     */
    public static function cut(string $s, int $max): string
    {
        if (\strlen($s) <= $max) {
            return $s;
        }
        if ($max <= 0) {
            return '';
        }
        $i = $max;
        // Byte $i is the first one cut away; while it continues a
        // character (10xxxxxx), that character started before the cut.
        while ($i > 0 && (\ord($s[$i]) & 0xC0) === 0x80) {
            $i--;
        }
        return \substr($s, 0, $i);
    }

    /** Replaces invalid UTF-8 sequences by '?' (or U+FFFD without mbstring). */
    private static function scrub(string $s): string
    {
        if (\function_exists('mb_scrub')) {
            return \mb_scrub($s, 'UTF-8');
        }
        // htmlspecialchars with ENT_SUBSTITUTE replaces invalid sequences by
        // U+FFFD; the decode is the exact inverse of the encoding otherwise.
        return \htmlspecialchars_decode(\htmlspecialchars($s, \ENT_NOQUOTES | \ENT_SUBSTITUTE, 'UTF-8'), \ENT_NOQUOTES);
    }
}
