<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * Removes secrets from texts before they leave the process: error messages,
 * URI paths and SQL statements. php/README.md ("Redaction") lists what is
 * matched; redact_keys and redact_patterns extend it.
 *
 * Texts (error messages, paths):
 * - key/value pairs whose key contains a sensitive word (password, token,
 *   secret, api_key, ...): `password=hunter2`, `"token": "abc"`, `api_key: x`
 * - `Bearer <token>` and `Basic <credentials>`
 * - the password of URL userinfo: `pgsql://user:pw@host`
 * - JSON Web Tokens (eyJ….….…)
 * - card numbers: 13-19 digits, optionally grouped by spaces or dashes, that
 *   pass the Luhn check
 * - every match of a configured redact_patterns regex
 *
 * SQL: string literals compared with, assigned to or inserted into a column
 * whose name contains a sensitive word (`password = '...'`,
 * `SET api_token = '...'`, `INSERT INTO users (email, password) VALUES
 * ('a', 'b')` redacts 'b'), and literals holding a card number, a JWT or a
 * bearer token. A literal becomes '[REDACTED]', so the statement still
 * parses and fingerprints the same. Placeholders ($1, ?, :name) carry no
 * values and are left alone.
 */
final class Redactor
{
    public const MASK = '[REDACTED]';

    /** Words that make a key or column name sensitive when the name contains them. */
    public const DEFAULT_KEYS = [
        'password', 'passwd', 'pwd', 'passphrase', 'secret', 'token', 'api_key', 'apikey', 'api-key',
        'access_key', 'private_key', 'authorization', 'credential', 'session', 'phpsessid', 'cookie',
        'card_number', 'cardnumber', 'ccnum', 'cvv', 'cvc', 'iban', 'signature',
    ];

    /** DEFAULT_KEYS as a regex alternation (kept in sync by RedactorTest). */
    public const DEFAULT_KEYS_PATTERN = 'password|passwd|pwd|passphrase|secret|token|api_key|apikey|api\\-key|access_key|private_key|authorization|credential|session|phpsessid|cookie|card_number|cardnumber|ccnum|cvv|cvc|iban|signature';

    /**
     * DEFAULT_KEYS again, factored by their first letters, for the
     * prechecks, which run on every request's URI and every statement:
     * PCRE tries each alternative of a flat list at every position that
     * starts one, so a flat list costs twice as much (6.8k against 12.9k
     * instructions on a 110-byte statement). RedactorTest checks that it
     * matches exactly what DEFAULT_KEYS_PATTERN matches.
     */
    public const DEFAULT_KEYS_PRECHECK = 'p(?:ass(?:word|wd|phrase)|wd|rivate_key|hpsessid)|s(?:e(?:cret|ssion)|ignature)|token|a(?:pi(?:_key|key|\\-key)|ccess_key|uthorization)|c(?:redential|ookie|ard_?number|cnum|v[vc])|iban';

    /**
     * The regexes around the key alternation: the prechecks (a key, a bearer
     * or basic token, URL userinfo, a JWT, 13 digits of a card number), the
     * key/value pairs (key possibly quoted, separator, value quoted or bare)
     * and the identifier test. With the default keys they are constants;
     * redact_keys builds them once per request from the same pieces.
     */
    private const TEXT_PRECHECK_TAIL = '|bearer\s|basic\s|:\/\/[^\s\/@]*:[^\s\/@]*@|eyJ|\d(?:[ -]?\d){12}/i';
    private const SQL_PRECHECK_TAIL = '|bearer\s|eyJ|\d(?:[ -]?\d){12}/i';
    private const PAIRS_HEAD = '/(?<key>[\w.-]*(?:';
    private const PAIRS_TAIL = ')[\w.-]*)(?<sep>["\']?\s*[:=]\s*)(?<val>"(?:[^"\\\\]|\\\\.)*"|\'(?:[^\'\\\\]|\\\\.)*\'|[^\s&;,"\'<>)}\]]+)/i';

    private string $keys = self::DEFAULT_KEYS_PATTERN;
    private string $textPrecheck = '/' . self::DEFAULT_KEYS_PRECHECK . self::TEXT_PRECHECK_TAIL;
    private string $sqlPrecheck = '/' . self::DEFAULT_KEYS_PRECHECK . self::SQL_PRECHECK_TAIL;
    private string $pairs = self::PAIRS_HEAD . self::DEFAULT_KEYS_PATTERN . self::PAIRS_TAIL;
    private string $identifier = '/(?:' . self::DEFAULT_KEYS_PATTERN . ')/i';

    /**
     * @param list<string> $extraKeys more sensitive words (lower case)
     * @param list<string> $patterns regexes whose matches are replaced by MASK
     */
    public function __construct(array $extraKeys = [], private readonly array $patterns = [])
    {
        if ($extraKeys === []) {
            return; // the defaults above: nothing to build on every request
        }
        $extra = '';
        foreach ($extraKeys as $k) {
            $extra .= '|' . \preg_quote($k, '/');
        }
        $keys = self::DEFAULT_KEYS_PATTERN . $extra;
        $this->keys = $keys;
        $this->textPrecheck = '/' . self::DEFAULT_KEYS_PRECHECK . $extra . self::TEXT_PRECHECK_TAIL;
        $this->sqlPrecheck = '/' . self::DEFAULT_KEYS_PRECHECK . $extra . self::SQL_PRECHECK_TAIL;
        $this->pairs = self::PAIRS_HEAD . $keys . self::PAIRS_TAIL;
        $this->identifier = '/(?:' . $keys . ')/i';
    }

    /** Redacts a free text: an error message, a path, a header value. */
    public function text(string $s): string
    {
        if ($s === '') {
            return $s;
        }
        if (\preg_match($this->textPrecheck, $s) === 1) {
            $s = (string) \preg_replace_callback($this->pairs, static function (array $m): string {
                $v = $m['val'];
                $q = $v[0] === '"' || $v[0] === "'" ? $v[0] : '';
                return $m['key'] . $m['sep'] . $q . self::MASK . $q;
            }, $s);
            $s = (string) \preg_replace(
                ['/\b(Bearer|Basic)\s+[A-Za-z0-9._~+\/=-]{6,}/i', '/(\b[a-z][a-z0-9+.-]*:\/\/[^\s\/:@]*:)[^\s\/@]+@/i', '/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/'],
                ['$1 ' . self::MASK, '$1' . self::MASK . '@', self::MASK],
                $s,
            );
            $s = self::cards($s);
        }
        foreach ($this->patterns as $re) {
            $s = (string) \preg_replace($re, self::MASK, $s);
        }
        return $s;
    }

    /**
     * True when sql() returns $sql as it is: no extra patterns, and nothing
     * the redaction looks for. sql() only ever replaces string literals,
     * and each begins with a quote, so a statement without one is untouched
     * (most are: placeholders carry the values). $comment is the
     * sqlcommenter comment the agent appended (SqlCommenter::apply(): last,
     * or just before a final semicolon); the quotes of its tags start no
     * literal.
     */
    public function sqlUntouched(string $sql, string $comment = ''): bool
    {
        if ($this->patterns !== []) {
            return false;
        }
        $quote = \strpos($sql, "'");
        if ($quote === false) {
            return true;
        }
        if ($comment !== '') {
            $at = \strlen($sql) - \strlen($comment) - ($sql[-1] === ';' ? 1 : 0);
            if ($quote >= $at && $at >= 0 && \substr_compare($sql, $comment, $at, \strlen($comment)) === 0) {
                return true;
            }
        }
        return \preg_match($this->sqlPrecheck, $sql) !== 1;
    }

    /** Redacts the sensitive literals of an SQL statement (see the class comment). */
    public function sql(string $sql): string
    {
        if (\preg_match($this->sqlPrecheck, $sql) === 1) {
            $sql = $this->sqlLiterals($sql);
        }
        foreach ($this->patterns as $re) {
            $sql = (string) \preg_replace($re, self::MASK, $sql);
        }
        return $sql;
    }

    /** A literal holding a card number, a JWT, a bearer token or a key=value secret. */
    private function literalHasSecret(string $literal): bool
    {
        if (\preg_match('/\d(?:[ -]?\d){12}/', $literal) === 1 && self::cards($literal) !== $literal) {
            return true;
        }
        return \preg_match('/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.|\b(?:bearer|basic)\s+[A-Za-z0-9._~+\/=-]{6,}/i', $literal) === 1
            || \preg_match($this->pairs, $literal) === 1;
    }

    /** Replaces Luhn-valid card numbers (13-19 digits, spaces or dashes between) by MASK. */
    public static function cards(string $s): string
    {
        return (string) \preg_replace_callback('/(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d])/', static function (array $m): string {
            $digits = \str_replace([' ', '-'], '', $m[0]);
            $n = \strlen($digits);
            return $n >= 13 && $n <= 19 && self::luhn($digits) ? self::MASK : $m[0];
        }, $s);
    }

    /** The Luhn checksum test of a string of digits. */
    public static function luhn(string $digits): bool
    {
        $sum = 0;
        $double = false;
        for ($i = \strlen($digits) - 1; $i >= 0; $i--) {
            $d = \ord($digits[$i]) - 48;
            if ($double) {
                $d *= 2;
                if ($d > 9) {
                    $d -= 9;
                }
            }
            $sum += $d;
            $double = !$double;
        }
        return $sum % 10 === 0;
    }

    /**
     * Walks the statement's tokens: a sensitive identifier followed by a
     * comparison or assignment makes the literals of that operand sensitive
     * (including those inside function calls and IN lists), and an INSERT
     * column list maps VALUES positions to columns.
     */
    private function sqlLiterals(string $sql): string
    {
        $n = \preg_match_all(
            '/[Ee]\'(?:[^\'\\\\]|\\\\.|\'\')*(?:\'|$)|\'(?:[^\']|\'\')*(?:\'|$)|"(?:[^"]|"")*(?:"|$)|[A-Za-z_][A-Za-z0-9_$.]*|--[^\n]*|\/\*.*?(?:\*\/|$)|\$\d+|\d+(?:\.\d+)?|<>|!=|:=|<=|>=|\S/s',
            $sql,
            $tokens,
            \PREG_OFFSET_CAPTURE,
        );
        if (!$n) {
            return $sql;
        }
        $tokens = $tokens[0];
        $redact = []; // token index => true

        $sensitiveDepth = -1; // paren depth at which a sensitive operand started; -1: none
        $afterOperator = false;
        $depth = 0;
        // INSERT column mapping
        $insertCols = null;   // list<bool> sensitive flags by position, once the column list is read
        $readingCols = false;
        $colIndex = 0;
        $inValues = false;
        $valueDepth = 0;
        $valueIndex = 0;
        $prevWord = '';

        foreach ($tokens as $i => [$t, $_]) {
            $c = $t[0];
            $isLiteral = $c === "'" || (($c === 'E' || $c === 'e') && isset($t[1]) && $t[1] === "'");
            if ($isLiteral) {
                if ($sensitiveDepth >= 0 && $afterOperator) {
                    $redact[$i] = true;
                } elseif ($inValues && $insertCols !== null && $depth === $valueDepth + 1 && ($insertCols[$valueIndex] ?? false)) {
                    $redact[$i] = true;
                } elseif ($this->literalHasSecret($t)) {
                    $redact[$i] = true;
                }
                continue;
            }
            if ($c === '(') {
                $depth++;
                if ($prevWord === 'into_table' && $insertCols === null) {
                    $readingCols = true;
                    $insertCols = [];
                    $colIndex = 0;
                }
                continue;
            }
            if ($c === ')') {
                $depth--;
                if ($readingCols && $depth === 0) {
                    $readingCols = false;
                }
                if ($sensitiveDepth >= 0 && $depth < $sensitiveDepth) {
                    $sensitiveDepth = -1;
                    $afterOperator = false;
                }
                if ($inValues && $depth === $valueDepth) {
                    $valueIndex = 0;
                }
                continue;
            }
            if ($c === ',') {
                if ($readingCols && $depth === 1) {
                    $colIndex++;
                } elseif ($inValues && $depth === $valueDepth + 1) {
                    $valueIndex++;
                }
                if ($sensitiveDepth >= 0 && $depth === $sensitiveDepth) {
                    // "SET password = 'x', name = 'y'": the next assignment is not sensitive
                    $sensitiveDepth = -1;
                    $afterOperator = false;
                }
                continue;
            }
            if (\ctype_alpha($c) || $c === '_' || $c === '"') {
                $word = \strtolower(\trim($t, '"'));
                if ($readingCols) {
                    $insertCols[$colIndex] = ($insertCols[$colIndex] ?? false) || \preg_match($this->identifier, $word) === 1;
                    continue;
                }
                if ($word === 'into' && $prevWord === 'insert') {
                    $prevWord = 'into';
                    continue;
                }
                if ($prevWord === 'into' || ($prevWord === 'into_table' && ($tokens[$i - 1][0] ?? '') === '.')) {
                    $prevWord = 'into_table'; // schema.table
                    continue;
                }
                if ($word === 'values') {
                    $inValues = true;
                    $valueDepth = $depth;
                    $valueIndex = 0;
                    $prevWord = $word;
                    continue;
                }
                if (\in_array($word, ['like', 'ilike', 'in', 'not', 'similar', 'to', 'is', 'distinct', 'from', 'any', 'all', 'array'], true) && $sensitiveDepth >= 0) {
                    $afterOperator = true;
                    continue;
                }
                $next = $tokens[$i + 1][0] ?? '';
                if ($next === '(' && $sensitiveDepth >= 0 && $afterOperator) {
                    // a function around the value: crypt('x', gen_salt('bf'))
                    continue;
                }
                if (\preg_match($this->identifier, $word) === 1) {
                    $sensitiveDepth = $depth;
                    $afterOperator = false;
                } elseif ($sensitiveDepth >= 0 && $depth === $sensitiveDepth) {
                    $sensitiveDepth = -1;
                    $afterOperator = false;
                }
                $prevWord = $word;
                continue;
            }
            if ($t === '=' || $t === '<>' || $t === '!=' || $t === ':=' || $t === '<' || $t === '>' || $t === '<=' || $t === '>=' || $t === '~' || $t === '[') {
                if ($sensitiveDepth >= 0) {
                    $afterOperator = true;
                }
                continue;
            }
            if ($c === ';') {
                $sensitiveDepth = -1;
                $afterOperator = false;
                $insertCols = null;
                $inValues = false;
                $prevWord = '';
            }
        }
        if ($redact === []) {
            return $sql;
        }
        $out = '';
        $at = 0;
        foreach ($redact as $i => $_) {
            [$t, $off] = $tokens[$i];
            $out .= \substr($sql, $at, $off - $at) . "'" . self::MASK . "'";
            $at = $off + \strlen($t);
        }
        return $out . \substr($sql, $at);
    }
}
