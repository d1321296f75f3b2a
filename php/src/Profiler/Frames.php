<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

use Bitville\Apm\Messages;

/**
 * Frame names, the agent's own frames, and the size limits of
 * docs/protocol.md for everything the profilers emit.
 *
 * Names follow Excimer: `Class::method`, `function`, `{closure:/path/file.php(12)}`,
 * the path of a file for the top-level code of an included file, and `{main}`
 * for the top-level code of the script itself.
 *
 * @internal
 */
final class Frames
{
    /** fn[] entries per request. */
    public const MAX_FUNCTIONS = Messages::MAX_FUNCTIONS;
    /** Bytes of a function or frame name. */
    public const MAX_NAME_BYTES = Messages::MAX_FUNCTION;
    /** stacks[] entries per request. */
    public const MAX_STACKS = Messages::MAX_STACKS;
    /** Bytes of one collapsed stack. */
    public const MAX_STACK_BYTES = Messages::MAX_STACK;
    /** Frames of a progress stack. */
    public const MAX_PROGRESS_FRAMES = Messages::MAX_FRAMES;

    public const MAIN = '{main}';
    /** Stands for the outer frames that were cut from a too deep stack. */
    public const TRUNCATED = '{truncated}';

    public const AGENT_NAMESPACE = 'Bitville\\Apm\\';

    /** @var array{0:string,1:string,2:string,3:string}|null */
    private static ?array $agentPaths = null;

    /**
     * Cuts $s to at most $max bytes without splitting a UTF-8 sequence.
     */
    public static function cut(string $s, int $max): string
    {
        if (\strlen($s) <= $max) {
            return $s;
        }
        $end = $max;
        // Step back over continuation bytes: the byte at $end (the first
        // one dropped) must start a character.
        while ($end > 0 && (\ord($s[$end]) & 0xC0) === 0x80) {
            $end--;
        }
        return \substr($s, 0, $end);
    }

    /**
     * A name safe for the wire: control characters (anonymous class names
     * carry a NUL) become '_', and it is cut to MAX_NAME_BYTES.
     */
    public static function clean(string $name): string
    {
        if (\strpbrk($name, "\0\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0A\x0B\x0C\x0D\x0E\x0F\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1A\x1B\x1C\x1D\x1E\x1F\x7F") !== false) {
            $name = (string) \preg_replace('/[\x00-\x1F\x7F]/', '_', $name);
        }
        return self::cut($name, self::MAX_NAME_BYTES);
    }

    /**
     * Whether an Excimer/xhprof frame name belongs to the agent: anything in
     * the Bitville\Apm\ namespace, and the top-level code and closures of the
     * agent's own files (php/src/**, php/bootstrap.php).
     */
    public static function isAgent(string $name): bool
    {
        if (\str_starts_with($name, self::AGENT_NAMESPACE)) {
            return true;
        }
        $c = $name[0] ?? '';
        if ($c !== '/' && $c !== '{') {
            return false;
        }
        [$src, $boot, $srcNoSpace, $bootNoSpace] = self::agentPaths();
        if ($c === '{') {
            if (!\str_starts_with($name, '{closure:')) {
                return false;
            }
            $path = \substr($name, 9);
            return \str_starts_with($path, $src) || \str_starts_with($path, $boot . '(')
                || \str_starts_with($path, $srcNoSpace) || \str_starts_with($path, $bootNoSpace . '(');
        }
        return \str_starts_with($name, $src) || $name === $boot
            || \str_starts_with($name, $srcNoSpace) || $name === $bootNoSpace;
    }

    /**
     * Whether an Excimer frame name is the top-level code of a file (Excimer
     * names it by the file's path; function and method names never contain
     * '/' or '.', closures start with '{').
     */
    public static function isFileScope(string $name): bool
    {
        return ($name[0] ?? '{') !== '{' && !\str_contains($name, '::') && \strpbrk($name, '/.') !== false;
    }

    /**
     * Joins frames (outermost first) into one collapsed stack of at most
     * MAX_STACK_BYTES, keeping the innermost frames behind a TRUNCATED frame
     * when it is too long. Frames must already be cut to MAX_NAME_BYTES.
     *
     * @param list<string> $frames
     */
    public static function collapse(array $frames): string
    {
        $s = \implode(';', $frames);
        if (\strlen($s) <= self::MAX_STACK_BYTES) {
            return $s;
        }
        $kept = [];
        $len = \strlen(self::TRUNCATED);
        for ($i = \count($frames) - 1; $i >= 0; $i--) {
            $add = \strlen($frames[$i]) + 1;
            if ($len + $add > self::MAX_STACK_BYTES) {
                break;
            }
            $len += $add;
            $kept[] = $frames[$i];
        }
        $kept[] = self::TRUNCATED;
        return \implode(';', \array_reverse($kept));
    }

    /**
     * Limits a progress stack (outermost first) to MAX_PROGRESS_FRAMES,
     * keeping the innermost frames behind a TRUNCATED frame.
     *
     * @param list<string> $frames
     * @return list<string>
     */
    public static function limitProgress(array $frames): array
    {
        $n = \count($frames);
        if ($n <= self::MAX_PROGRESS_FRAMES) {
            return $frames;
        }
        $kept = \array_slice($frames, $n - (self::MAX_PROGRESS_FRAMES - 1));
        \array_unshift($kept, self::TRUNCATED);
        return $kept;
    }

    /**
     * Orders fn entries heaviest self first (then inclusive, then name, so
     * the order and any cut are deterministic) and keeps MAX_FUNCTIONS.
     * Sorted by array_multisort(): a C sort, no PHP callback per comparison.
     *
     * @param list<array{n:string,self:float,incl:float,calls?:int}> $fn
     * @return list<array{n:string,self:float,incl:float,calls?:int}>
     */
    public static function rankFunctions(array $fn): array
    {
        if (\count($fn) < 2) {
            return $fn;
        }
        $self = \array_column($fn, 'self');
        $incl = \array_column($fn, 'incl');
        $names = \array_column($fn, 'n');
        \array_multisort($self, \SORT_DESC, \SORT_NUMERIC, $incl, \SORT_DESC, \SORT_NUMERIC, $names, \SORT_ASC, \SORT_STRING, $fn);
        if (\count($fn) > self::MAX_FUNCTIONS) {
            $fn = \array_slice($fn, 0, self::MAX_FUNCTIONS);
        }
        return $fn;
    }

    /**
     * Orders stacks by samples (then text) and keeps MAX_STACKS.
     *
     * @param array<string,int> $counts collapsed stack => samples
     * @return list<array{s:string,n:int}>
     */
    public static function rankStacks(array $counts): array
    {
        $keys = [];
        foreach ($counts as $k => $_) {
            $keys[] = (string) $k;
        }
        $vals = \array_values($counts);
        if (\count($vals) > 1) {
            \array_multisort($vals, \SORT_DESC, \SORT_NUMERIC, $keys, \SORT_ASC, \SORT_STRING);
        }
        $out = [];
        foreach ($keys as $i => $s) {
            if ($i >= self::MAX_STACKS) {
                break;
            }
            $out[] = ['s' => $s, 'n' => $vals[$i]];
        }
        return $out;
    }

    /**
     * @return array{0:string,1:string,2:string,3:string} src dir with '/', bootstrap path, and both with spaces as '_'
     */
    private static function agentPaths(): array
    {
        if (self::$agentPaths === null) {
            $src = \dirname(__DIR__) . '/';
            $boot = \dirname(__DIR__, 2) . '/bootstrap.php';
            self::$agentPaths = [$src, $boot, \str_replace(' ', '_', $src), \str_replace(' ', '_', $boot)];
        }
        return self::$agentPaths;
    }
}
