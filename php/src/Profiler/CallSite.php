<?php

declare(strict_types=1);

namespace Bitville\Apm\Profiler;

/**
 * Names the internal call a real-clock sample was taken right after.
 *
 * Excimer never shows internal functions as frames: a blocking call
 * (session_start(), fread(), PDO::__construct, Redis::get, …) shows as ONE
 * log entry of the user function that made it, with an event count of 2 or
 * more, taken at the first interrupt check after the call returned. Its
 * `line` is the line of the next opline: the call's own line when the call's
 * statement goes on (`$x = fread($s, 10);`, `if (!flock($fp, LOCK_EX)) {`,
 * `return $this->redis->get($k);`), the next statement's line when the call
 * was a statement of its own (`session_start();`), the closing brace when it
 * was the function's last statement.
 *
 * resolve() reads the tokens of the frame's file (once per process, at most
 * MAX_FILES files of at most MAX_FILE_BYTES) and finds, inside the frame's
 * own function:
 * - the calls that start on the resume line within statements that go on
 *   after them (a statement begun on an earlier line, a statement begun on
 *   that line whose first expression is not the call itself, a call
 *   statement followed by another statement on the same line);
 * - if there are none and a statement begins on the resume line (or the
 *   line closes the function), the call of the preceding statement when
 *   that statement is a bare call.
 * Calls known to be user code (functions, methods and constructors PHP
 * reports as user-defined) are left out: they would have had their own
 * frame. One candidate name, or a chain of nested calls (the innermost
 * wins), names the call; anything else — several unrelated calls, a
 * variable call, a control-flow jump (a loop's back-edge, the end of an if
 * block), a file that changed — returns null and the caller keeps the user
 * function.
 *
 * @internal
 */
final class CallSite
{
    /** Files whose tokens are kept per process. */
    public const MAX_FILES = 64;
    /** Larger files are not read (the sample keeps the user function). */
    public const MAX_FILE_BYTES = 1048576;
    /** Resolved positions kept per process. */
    private const MAX_RESOLVED = 4096;

    /** @var array<string, array<string, mixed>|false> file => parsed, false = not usable */
    private static array $files = [];
    /** @var array<string, ?string> */
    private static array $resolved = [];

    private const KIND_FUNCTION = 0;
    private const KIND_STATIC = 1;
    private const KIND_NEW = 2;
    private const KIND_METHOD = 3;
    private const KIND_DYNAMIC = 4;

    /**
     * The call made by $frame's function that returned just before the
     * frame's position, or null when unsure. Never throws.
     *
     * @param array<string, mixed> $frame an ExcimerLogEntry::getTrace() frame
     */
    public static function resolve(array $frame): ?string
    {
        try {
            $file = $frame['file'] ?? null;
            $line = $frame['line'] ?? null;
            if (!\is_string($file) || $file === '' || !\is_int($line) || $line <= 0) {
                return null;
            }
            $class = \is_string($frame['class'] ?? null) ? $frame['class'] : '';
            $function = \is_string($frame['function'] ?? null) ? $frame['function'] : '';
            $closureLine = \is_int($frame['closure_line'] ?? null) ? $frame['closure_line'] : 0;
            $key = $file . "\0" . $line . "\0" . $class . "\0" . $function . "\0" . $closureLine;
            if (\array_key_exists($key, self::$resolved)) {
                return self::$resolved[$key];
            }
            $parsed = self::parsed($file);
            $name = $parsed === false ? null : self::find($parsed, $line, $class, $function, $closureLine);
            if (\count(self::$resolved) >= self::MAX_RESOLVED) {
                self::$resolved = [];
            }
            return self::$resolved[$key] = $name;
        } catch (\Throwable) {
            return null;
        }
    }

    /** Forgets every file and position (tests). */
    public static function reset(): void
    {
        self::$files = [];
        self::$resolved = [];
    }

    /** @return array<string, mixed>|false */
    private static function parsed(string $file): array|false
    {
        if (isset(self::$files[$file])) {
            return self::$files[$file];
        }
        $parsed = false;
        $size = @\filesize($file);
        if (\is_int($size) && $size > 0 && $size <= self::MAX_FILE_BYTES && @\is_readable($file)) {
            $src = @\file_get_contents($file);
            if (\is_string($src)) {
                $parsed = self::parse($src);
            }
        }
        if (\count(self::$files) >= self::MAX_FILES) {
            \array_shift(self::$files);
        }
        return self::$files[$file] = $parsed;
    }

    /**
     * The file's functions, statements and calls.
     *
     * scopes: [kind ('file'|'function'|'method'|'closure'), name, class, start line, end line]
     * stmts: [scope, first line, last line, bare (a call statement), outer call]
     * calls: [kind, name, namespace, stmt, line, parent call, $this call]
     *
     * @internal public for tests
     * @return array{scopes: list<array{0:string,1:string,2:string,3:int,4:int}>, stmts: list<array{0:int,1:int,2:int,3:bool,4:int}>, calls: list<array{0:int,1:string,2:string,3:int,4:int,5:int,6:bool}>, uses: array<string,string>, fnUses: array<string,string>}
     */
    public static function parse(string $src): array
    {
        $tokens = \token_get_all($src);
        $scopes = [['file', '', '', 1, \PHP_INT_MAX]];
        $stmts = [];
        $calls = [];
        $uses = [];
        $fnUses = [];
        $ns = '';
        $classes = []; // brace depth => class name

        $sig = []; // significant tokens: [id or char, text, line]
        $line = 1;
        foreach ($tokens as $t) {
            if (\is_array($t)) {
                $line = $t[2] + \substr_count($t[1], "\n");
                if ($t[0] === \T_WHITESPACE || $t[0] === \T_COMMENT || $t[0] === \T_DOC_COMMENT || $t[0] === \T_OPEN_TAG || $t[0] === \T_INLINE_HTML) {
                    continue;
                }
                if ($t[0] === \T_CLOSE_TAG || $t[0] === \T_OPEN_TAG_WITH_ECHO) {
                    $sig[] = [';', ';', $t[2]];
                    continue;
                }
                $sig[] = [$t[0], $t[1], $t[2]];
            } else {
                $sig[] = [$t, $t, $line];
            }
        }

        $paren = 0;
        // brace stack: [type ('block'|'fn'|'class'|'expr'), paren depth at open, scope, named (ends the outer statement)]
        $braces = [];
        // scope stack: [scope id, base paren depth, arrow (ends without a brace)]
        $scopeStack = [[0, 0, false]];
        $cur = [0 => -1]; // scope => current statement
        $stmtInfo = [];   // stmt => [bare so far, base depth, last token was the close of call N]
        $parenStack = []; // [call id or -1, owner token]
        $pendingFn = null; // [kind, name, line, paren depth]
        $pendingClass = null;
        $lastClosedOwner = null;
        $inAttr = 0;
        $n = \count($sig);
        for ($i = 0; $i < $n; $i++) {
            [$id, $text, $ln] = $sig[$i];
            $prev = $i > 0 ? $sig[$i - 1][0] : null;
            [$scope, $base, $arrow] = $scopeStack[\count($scopeStack) - 1];

            // arrow functions end at , ; ) ] at their own depth
            if ($arrow && ($paren < $base || ($paren === $base && ($id === ',' || $id === ';' || $id === ')' || $id === ']')))) {
                \array_pop($scopeStack);
                $scopes[$scope][4] = $ln;
                $i--;
                continue;
            }

            if ($id === \T_NAMESPACE && ($sig[$i + 1][0] ?? null) !== \T_NS_SEPARATOR && \count($braces) === 0) {
                $ns = '';
                $j = $i + 1;
                if (\in_array($sig[$j][0] ?? null, [\T_STRING, \T_NAME_QUALIFIED], true)) {
                    $ns = $sig[$j][1];
                }
                $uses = [];
                $fnUses = [];
            }
            if ($id === \T_USE && $scope === 0 && $classes === [] && ($sig[$i + 1][0] ?? null) !== '(') {
                $i = self::parseUse($sig, $i, $uses, $fnUses);
                continue;
            }

            if ($id === \T_ATTRIBUTE) {
                $inAttr++;
                $parenStack[] = [-1, \T_ATTRIBUTE];
                $paren++;
                continue;
            }

            // statements
            if ($id !== '{' && $id !== '}' && $id !== ';' && $cur[$scope] === -1) {
                $sid = \count($stmts);
                $stmts[] = [$scope, $ln, $ln, false, -1];
                $stmtInfo[$sid] = [true, $paren, -1];
                $cur[$scope] = $sid;
            }
            $sid = $cur[$scope] ?? -1;
            if ($sid >= 0) {
                $stmts[$sid][2] = $ln;
                if ($paren === $stmtInfo[$sid][1] && !\in_array($id, [\T_STRING, \T_NAME_QUALIFIED, \T_NAME_FULLY_QUALIFIED, \T_NAME_RELATIVE, \T_VARIABLE, \T_NEW, \T_STATIC, \T_OBJECT_OPERATOR, \T_NULLSAFE_OBJECT_OPERATOR, \T_DOUBLE_COLON, '(', ')', '[', ']', ';', '$'], true)) {
                    $stmtInfo[$sid][0] = false;
                }
                if ($id !== ';') {
                    $stmtInfo[$sid][2] = -1;
                }
            }

            switch ($id) {
                case T_FUNCTION:
                    $name = ($sig[$i + 1][0] ?? null) === \T_STRING ? $sig[$i + 1][1] : (($sig[$i + 1][0] ?? null) === '&' && ($sig[$i + 2][0] ?? null) === \T_STRING ? $sig[$i + 2][1] : '');
                    $kind = $name === '' ? 'closure' : ($classes !== [] && \count($braces) === \array_key_last($classes) + 1 ? 'method' : 'function');
                    $pendingFn = [$kind, $name, $ln, $paren];
                    break;
                case T_FN:
                    $pendingFn = ['arrow', '', $ln, $paren];
                    break;
                case T_DOUBLE_ARROW:
                    if ($pendingFn !== null && $pendingFn[0] === 'arrow' && $paren === $pendingFn[3]) {
                        $scopes[] = ['closure', '', $classes === [] ? '' : (string) \end($classes), $pendingFn[2], $ln];
                        $scopeStack[] = [\count($scopes) - 1, $paren, true];
                        $cur[\count($scopes) - 1] = -1;
                        $pendingFn = null;
                    }
                    break;
                case T_CLASS:
                case T_TRAIT:
                case T_INTERFACE:
                case T_ENUM:
                    if ($prev !== \T_DOUBLE_COLON) {
                        $cname = ($sig[$i + 1][0] ?? null) === \T_STRING ? $sig[$i + 1][1] : '';
                        $pendingClass = $cname === '' ? 'class@anonymous' : ($ns !== '' ? $ns . '\\' . $cname : $cname);
                    }
                    break;
                case '(':
                    $call = -1;
                    if ($inAttr === 0 && $pendingFn === null) {
                        $call = self::call($sig, $i, $ns, $sid, $calls, $parenStack);
                    }
                    $parenStack[] = [$call, $prev];
                    $paren++;
                    break;
                case '[':
                    $parenStack[] = [-1, '['];
                    $paren++;
                    break;
                case ')':
                case ']':
                    $paren--;
                    $p = \array_pop($parenStack) ?? [-1, null];
                    if ($p[1] === \T_ATTRIBUTE) {
                        $inAttr--;
                    }
                    $lastClosedOwner = $p[1];
                    if ($p[0] >= 0 && $sid >= 0) {
                        $stmtInfo[$sid][2] = $p[0];
                    }
                    break;
                case ';':
                    if ($paren === ($stmtInfo[$sid][1] ?? $paren) || $sid < 0) {
                        if ($sid >= 0) {
                            $outer = $stmtInfo[$sid][2];
                            $stmts[$sid][3] = $stmtInfo[$sid][0] && $outer >= 0 && $calls[$outer][5] === -1;
                            $stmts[$sid][4] = $outer;
                        }
                        $cur[$scope] = -1;
                        if ($pendingFn !== null && $pendingFn[3] === $paren) {
                            $pendingFn = null; // an abstract method
                        }
                    }
                    break;
                case '{':
                case T_CURLY_OPEN:
                case T_DOLLAR_OPEN_CURLY_BRACES:
                    $expr = $id !== '{' || \in_array($prev, [\T_OBJECT_OPERATOR, \T_NULLSAFE_OBJECT_OPERATOR, \T_DOUBLE_COLON, '$'], true)
                        || ($prev === ')' && $lastClosedOwner === \T_MATCH);
                    if ($expr) {
                        $braces[] = ['expr', $paren, $scope, false];
                    } elseif ($pendingFn !== null && $pendingFn[0] !== 'arrow' && $paren === $pendingFn[3]) {
                        $scopes[] = [$pendingFn[0], $pendingFn[1], $classes === [] ? '' : (string) \end($classes), $pendingFn[2], $ln];
                        $new = \count($scopes) - 1;
                        $braces[] = ['fn', $paren, $new, $pendingFn[0] !== 'closure'];
                        $scopeStack[] = [$new, $paren, false];
                        $cur[$new] = -1;
                        $pendingFn = null;
                    } elseif ($pendingClass !== null) {
                        $classes[\count($braces)] = $pendingClass;
                        $braces[] = ['class', $paren, $scope, $pendingClass !== 'class@anonymous'];
                        $pendingClass = null;
                        $cur[$scope] = -1;
                    } else {
                        $braces[] = ['block', $paren, $scope, false];
                        $cur[$scope] = -1;
                    }
                    break;
                case '}':
                    $b = \array_pop($braces);
                    if ($b === null) {
                        break;
                    }
                    if ($b[0] === 'fn') {
                        $scopes[$b[2]][4] = $ln;
                        // an arrow function still open inside ends too
                        while (\count($scopeStack) > 1 && $scopeStack[\count($scopeStack) - 1][0] !== $b[2]) {
                            \array_pop($scopeStack);
                        }
                        \array_pop($scopeStack);
                        $outerScope = $scopeStack[\count($scopeStack) - 1][0];
                        if ($b[3]) {
                            $cur[$outerScope] = -1;
                        }
                    } elseif ($b[0] === 'class') {
                        unset($classes[\count($braces)]);
                        if ($b[3]) {
                            $cur[$scope] = -1;
                        }
                    } elseif ($b[0] === 'block') {
                        $cur[$scope] = -1;
                    }
                    break;
            }
        }
        return ['scopes' => $scopes, 'stmts' => $stmts, 'calls' => $calls, 'uses' => $uses, 'fnUses' => $fnUses];
    }

    /**
     * Records the call whose argument list opens at $sig[$i], if it is one.
     *
     * @param list<array{0:int|string,1:string,2:int}> $sig
     * @param list<array{0:int,1:string,2:string,3:int,4:int,5:int,6:bool}> $calls
     * @param list<array{0:int,1:mixed}> $parenStack
     */
    private static function call(array $sig, int $i, string $ns, int $sid, array &$calls, array $parenStack): int
    {
        $prev = $sig[$i - 1] ?? null;
        if ($prev === null || $sid < 0) {
            return -1;
        }
        $before = $sig[$i - 2][0] ?? null;
        $kind = null;
        $name = '';
        $this_ = false;
        if (\in_array($prev[0], [\T_STRING, \T_NAME_QUALIFIED, \T_NAME_FULLY_QUALIFIED, \T_NAME_RELATIVE, \T_STATIC], true)) {
            $name = $prev[1];
            if ($before === \T_FUNCTION || $before === \T_CONST || $before === '&' && ($sig[$i - 3][0] ?? null) === \T_FUNCTION) {
                return -1;
            }
            if ($before === \T_OBJECT_OPERATOR || $before === \T_NULLSAFE_OBJECT_OPERATOR) {
                $kind = self::KIND_METHOD;
                $this_ = ($sig[$i - 3][0] ?? null) === \T_VARIABLE && $sig[$i - 3][1] === '$this' && $before === \T_OBJECT_OPERATOR;
            } elseif ($before === \T_DOUBLE_COLON) {
                $cls = $sig[$i - 3] ?? null;
                if ($cls !== null && \in_array($cls[0], [\T_STRING, \T_NAME_QUALIFIED, \T_NAME_FULLY_QUALIFIED, \T_NAME_RELATIVE, \T_STATIC], true)) {
                    $kind = self::KIND_STATIC;
                    $name = $cls[1] . '::' . $name;
                } else {
                    $kind = self::KIND_DYNAMIC;
                }
            } elseif ($before === \T_NEW) {
                $kind = self::KIND_NEW;
            } elseif ($prev[0] === \T_STATIC) {
                return -1;
            } else {
                $kind = self::KIND_FUNCTION;
            }
        } elseif ($prev[0] === \T_VARIABLE || $prev[0] === ')' || $prev[0] === ']' || $prev[0] === '}') {
            if ($prev[0] === \T_VARIABLE && $before === \T_NEW) {
                $kind = self::KIND_DYNAMIC;
            } elseif ($prev[0] === ')' || $prev[0] === ']' || $prev[0] === \T_VARIABLE) {
                $kind = self::KIND_DYNAMIC;
            } else {
                return -1;
            }
        } else {
            return -1; // keywords: if, while, array, isset, function, fn, match, …
        }
        $parent = -1;
        for ($k = \count($parenStack) - 1; $k >= 0; $k--) {
            if ($parenStack[$k][0] >= 0) {
                $parent = $parenStack[$k][0];
                break;
            }
        }
        $calls[] = [$kind, $name, $ns, $sid, $prev[2], $parent, $this_];
        return \count($calls) - 1;
    }

    /**
     * A top-level `use` statement: class and function imports.
     *
     * @param list<array{0:int|string,1:string,2:int}> $sig
     * @param array<string,string> $uses
     * @param array<string,string> $fnUses
     */
    private static function parseUse(array $sig, int $i, array &$uses, array &$fnUses): int
    {
        $n = \count($sig);
        $fn = false;
        $j = $i + 1;
        if (($sig[$j][0] ?? null) === \T_FUNCTION) {
            $fn = true;
            $j++;
        } elseif (($sig[$j][0] ?? null) === \T_CONST) {
            $j++;
        }
        $prefix = '';
        $name = '';
        $alias = '';
        for (; $j < $n; $j++) {
            [$id, $text] = $sig[$j];
            if ($id === \T_STRING || $id === \T_NAME_QUALIFIED || $id === \T_NAME_FULLY_QUALIFIED) {
                if ($alias === '#') {
                    $alias = $text;
                } else {
                    $name = \ltrim($text, '\\');
                }
            } elseif ($id === \T_AS) {
                $alias = '#';
            } elseif ($id === \T_NS_SEPARATOR && ($sig[$j + 1][0] ?? null) === '{') {
                $prefix = $name . '\\';
                $name = '';
                $j++;
            } elseif ($id === \T_FUNCTION) {
                $fn = true;
            } elseif ($id === ',' || $id === '}' || $id === ';') {
                if ($name !== '') {
                    $full = $prefix . $name;
                    $short = $alias !== '' && $alias !== '#' ? $alias : (string) \substr((string) \strrchr('\\' . $full, '\\'), 1);
                    if ($fn) {
                        $fnUses[\strtolower($short)] = $full;
                    } else {
                        $uses[\strtolower($short)] = $full;
                    }
                }
                $name = '';
                $alias = '';
                if ($id === ';') {
                    return $j;
                }
            }
        }
        return $j;
    }

    /**
     * @param array{scopes: list<array{0:string,1:string,2:string,3:int,4:int}>, stmts: list<array{0:int,1:int,2:int,3:bool,4:int}>, calls: list<array{0:int,1:string,2:string,3:int,4:int,5:int,6:bool}>, uses: array<string,string>, fnUses: array<string,string>} $p
     */
    private static function find(array $p, int $line, string $class, string $function, int $closureLine): ?string
    {
        $scope = self::scope($p['scopes'], $line, $class, $function, $closureLine);
        if ($scope === null) {
            return null;
        }
        $onLine = [];
        $preceding = -1;
        foreach ($p['stmts'] as $sid => $st) {
            if ($st[0] !== $scope) {
                continue;
            }
            if ($st[2] < $line) {
                $preceding = $sid;
            } elseif ($st[1] <= $line) {
                $onLine[] = $sid;
            } else {
                break;
            }
        }
        $byStmt = [];
        foreach ($p['calls'] as $cid => $c) {
            if ($c[4] === $line) {
                $byStmt[$c[3]][] = $cid;
            }
        }
        $cands = [];
        foreach ($onLine as $k => $sid) {
            $st = $p['stmts'][$sid];
            $here = $byStmt[$sid] ?? [];
            if ($st[1] < $line || !$st[3] || $k < \count($onLine) - 1) {
                \array_push($cands, ...$here);
            }
        }
        $cands = self::known($p, $cands, $class);
        $scopeEnd = $p['scopes'][$scope][4];
        if ($cands === [] && (($onLine !== [] && $p['stmts'][$onLine[0]][1] === $line) || ($onLine === [] && $scope !== 0 && $scopeEnd === $line))) {
            if ($preceding >= 0 && $p['stmts'][$preceding][3]) {
                $cands = self::known($p, [$p['stmts'][$preceding][4]], $class);
            }
        }
        return self::choose($p, $cands);
    }

    /**
     * The scope (function body) of the frame, when exactly one matches.
     *
     * @param list<array{0:string,1:string,2:string,3:int,4:int}> $scopes
     */
    private static function scope(array $scopes, int $line, string $class, string $function, int $closureLine): ?int
    {
        $found = [];
        foreach ($scopes as $id => [$kind, $name, $cls, $start, $end]) {
            if ($line < $start || $line > $end) {
                continue;
            }
            if ($function === '') {
                $ok = $kind === 'file';
            } elseif (\str_starts_with($function, '{closure')) {
                $ok = $kind === 'closure' && ($closureLine === 0 || $closureLine === $start);
            } elseif ($class !== '') {
                $ok = $kind === 'method' && \strcasecmp($name, $function) === 0;
            } else {
                $short = (string) \substr((string) \strrchr('\\' . $function, '\\'), 1);
                $ok = $kind === 'function' && \strcasecmp($name, $short) === 0;
            }
            if ($ok) {
                $found[] = $id;
            }
        }
        if ($function === '') {
            // top-level code: only when no function body holds the line
            foreach ($scopes as $id => $s) {
                if ($id !== 0 && $line >= $s[3] && $line <= $s[4]) {
                    return null;
                }
            }
        }
        return \count($found) === 1 ? $found[0] : null;
    }

    /**
     * The candidate calls with their names, leaving out calls PHP knows to
     * be user code (they would have had a frame of their own).
     *
     * @param array<string, mixed> $p
     * @param list<int> $ids
     * @return array<int, ?string> call id => name, null when unknown
     */
    private static function known(array $p, array $ids, string $frameClass): array
    {
        $out = [];
        foreach ($ids as $cid) {
            if ($cid < 0) {
                continue;
            }
            [$kind, $raw, $ns, , , , $isThis] = $p['calls'][$cid];
            $name = null;
            switch ($kind) {
                case self::KIND_FUNCTION:
                    $fn = self::functionName($raw, $ns, $p);
                    if (\function_exists($fn) && !(new \ReflectionFunction($fn))->isInternal()) {
                        continue 2;
                    }
                    $name = $fn;
                    break;
                case self::KIND_STATIC:
                    [$cls, $method] = \explode('::', $raw, 2);
                    $cls = self::className($cls, $ns, $p, $frameClass);
                    if ($cls === null) {
                        break;
                    }
                    if (\class_exists($cls, false) && \method_exists($cls, $method)) {
                        $m = new \ReflectionMethod($cls, $method);
                        if (!$m->isInternal()) {
                            continue 2;
                        }
                        $cls = $m->getDeclaringClass()->getName();
                    }
                    $name = $cls . '::' . $method;
                    break;
                case self::KIND_NEW:
                    $cls = self::className($raw, $ns, $p, $frameClass);
                    if ($cls === null) {
                        break;
                    }
                    if (\class_exists($cls, false)) {
                        $ctor = (new \ReflectionClass($cls))->getConstructor();
                        if ($ctor === null || !$ctor->isInternal()) {
                            continue 2;
                        }
                        $cls = $ctor->getDeclaringClass()->getName();
                    }
                    $name = $cls . '::__construct';
                    break;
                case self::KIND_METHOD:
                    if ($isThis && $frameClass !== '' && \class_exists($frameClass, false) && \method_exists($frameClass, $raw)
                        && !(new \ReflectionMethod($frameClass, $raw))->isInternal()) {
                        continue 2;
                    }
                    $name = '->' . $raw;
                    break;
            }
            $out[$cid] = $name;
        }
        return $out;
    }

    /**
     * One name, or the innermost of a chain of nested calls; null when unsure.
     *
     * @param array<string, mixed> $p
     * @param array<int, ?string> $cands
     */
    private static function choose(array $p, array $cands): ?string
    {
        if ($cands === []) {
            return null;
        }
        $names = \array_unique(\array_map(static fn (?string $n): string => $n ?? "\0", $cands));
        if (\count($names) === 1) {
            $n = \reset($cands);
            return $n === null ? null : Frames::clean($n);
        }
        // nested: each an argument of the one before; the innermost returned first
        $ids = \array_keys($cands);
        \sort($ids);
        for ($k = 1, $c = \count($ids); $k < $c; $k++) {
            $parent = $p['calls'][$ids[$k]][5];
            while ($parent >= 0 && $parent !== $ids[$k - 1]) {
                $parent = $p['calls'][$parent][5];
            }
            if ($parent !== $ids[$k - 1]) {
                return null;
            }
        }
        $n = $cands[$ids[\count($ids) - 1]];
        return $n === null ? null : Frames::clean($n);
    }

    /** @param array<string, mixed> $p */
    private static function functionName(string $raw, string $ns, array $p): string
    {
        if ($raw[0] === '\\') {
            return \substr($raw, 1);
        }
        if (\str_starts_with(\strtolower($raw), 'namespace\\')) {
            return ($ns !== '' ? $ns . '\\' : '') . \substr($raw, 10);
        }
        $sep = \strpos($raw, '\\');
        if ($sep !== false) {
            $first = \strtolower(\substr($raw, 0, $sep));
            $base = $p['uses'][$first] ?? ($ns !== '' ? $ns . '\\' . \substr($raw, 0, $sep) : \substr($raw, 0, $sep));
            return $base . \substr($raw, $sep);
        }
        $imported = $p['fnUses'][\strtolower($raw)] ?? null;
        if ($imported !== null) {
            return $imported;
        }
        if ($ns !== '' && \function_exists($ns . '\\' . $raw)) {
            return $ns . '\\' . $raw;
        }
        return $raw;
    }

    /** @param array<string, mixed> $p */
    private static function className(string $raw, string $ns, array $p, string $frameClass): ?string
    {
        $lower = \strtolower($raw);
        if ($lower === 'self' || $lower === 'static') {
            return $frameClass !== '' ? $frameClass : null;
        }
        if ($lower === 'parent') {
            if ($frameClass === '' || !\class_exists($frameClass, false)) {
                return null;
            }
            $parent = \get_parent_class($frameClass);
            return \is_string($parent) ? $parent : null;
        }
        if ($raw[0] === '\\') {
            return \substr($raw, 1);
        }
        if (\str_starts_with($lower, 'namespace\\')) {
            return ($ns !== '' ? $ns . '\\' : '') . \substr($raw, 10);
        }
        $sep = \strpos($raw, '\\');
        $first = \strtolower($sep === false ? $raw : \substr($raw, 0, $sep));
        $imported = $p['uses'][$first] ?? null;
        if ($imported !== null) {
            return $imported . ($sep === false ? '' : \substr($raw, $sep));
        }
        return $ns !== '' ? $ns . '\\' . $raw : $raw;
    }
}
