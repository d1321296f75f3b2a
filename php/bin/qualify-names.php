<?php

declare(strict_types=1);

/*
 * Writes every call of a PHP function and every use of a PHP constant in
 * php/src as a fully qualified name (\strlen(), \PHP_INT_MAX). Inside a
 * namespace an unqualified name is looked up in the namespace first, at run
 * time, on the first use in every request; a qualified one is resolved when
 * the file is compiled, and the compiler turns calls such as \strlen() or
 * \is_string() into single instructions. The agent runs these lines on every
 * request (docs/performance.md). Run after changing src/:
 *
 *   php php/bin/qualify-names.php
 *
 * QualifiedNamesTest fails while a file in src/ would change. With --check
 * it only reports, exiting 1 when a file would change.
 */

/** @return array{string, int} the qualified code and the number of names changed */
function qualify(string $code, array $constants): array
{
    $tokens = token_get_all($code);
    $n = count($tokens);
    $skip = [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT];
    $near = static function (int $i, int $step) use ($tokens, $n, $skip) {
        for ($j = $i + $step; $j >= 0 && $j < $n; $j += $step) {
            if (!is_array($tokens[$j]) || !in_array($tokens[$j][0], $skip, true)) {
                return $tokens[$j];
            }
        }
        return null;
    };
    // What may stand before a name that is not a use of a global one.
    $declaring = [T_OBJECT_OPERATOR, T_NULLSAFE_OBJECT_OPERATOR, T_DOUBLE_COLON, T_FUNCTION, T_NEW, T_NS_SEPARATOR,
        T_CONST, T_USE, T_CLASS, T_CASE, T_INTERFACE, T_ENUM, T_FN, T_TRAIT, T_EXTENDS, T_IMPLEMENTS, T_INSTANCEOF, T_GOTO];
    $out = '';
    $changed = 0;
    foreach ($tokens as $i => $t) {
        if (is_array($t) && $t[0] === T_STRING) {
            $prev = $near($i, -1);
            $next = $near($i, 1);
            $global = !in_array(is_array($prev) ? $prev[0] : $prev, $declaring, true);
            $isCall = $next === '(' && function_exists($t[1]) && (new ReflectionFunction($t[1]))->isInternal();
            $isConst = $next !== '(' && $next !== ':' && !(is_array($next) && $next[0] === T_DOUBLE_COLON) && isset($constants[$t[1]]);
            if ($global && ($isCall || $isConst)) {
                $out .= '\\' . $t[1];
                $changed++;
                continue;
            }
        }
        $out .= is_array($t) ? $t[1] : $t;
    }
    return [$out, $changed];
}

$constants = [];
foreach (get_defined_constants(true) as $module => $list) {
    if ($module !== 'user') {
        $constants += $list;
    }
}
unset($constants['TRUE'], $constants['FALSE'], $constants['NULL']);

$check = in_array('--check', $argv, true);
$src = dirname(__DIR__) . '/src';
$files = new RecursiveIteratorIterator(new RecursiveDirectoryIterator($src, FilesystemIterator::SKIP_DOTS));
$stale = [];
foreach ($files as $f) {
    if (!str_ends_with($f->getFilename(), '.php')) {
        continue;
    }
    $code = (string) file_get_contents($f->getPathname());
    [$want, $changed] = qualify($code, $constants);
    if ($changed === 0) {
        continue;
    }
    $stale[] = substr($f->getPathname(), strlen($src) + 1) . " ($changed)";
    if (!$check) {
        file_put_contents($f->getPathname(), $want);
    }
}
sort($stale);
if ($check && $stale !== []) {
    fwrite(STDERR, "unqualified PHP functions or constants (run php php/bin/qualify-names.php):\n  " . implode("\n  ", $stale) . "\n");
    exit(1);
}
echo $check ? "php/src: every PHP function and constant is qualified\n" : 'qualified names in ' . count($stale) . " files\n";
