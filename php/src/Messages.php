<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * Builds the start, progress and end messages of wire protocol v2
 * (docs/protocol.md) as arrays, from a RequestRecord and the measurements
 * taken by the runtime. Every string that comes from the application is
 * redacted, sanitized and cut to its field limit here; Encoder then fits the
 * whole message into one datagram.
 *
 * Optional keys follow fixed rules (the golden messages under
 * testdata/protocol show them): `dropped` is always in start and in other
 * messages only when non-zero; `pool` and `host` only when known; `exit` only
 * when known; `errors_dropped` only when there are errors or drops;
 * `trace_id` only with a valid incoming traceparent; `sites` and
 * `sql[].site` only when statements have call sites; `forced` only when
 * true; `fn`, `stacks` and `period` only when a profiler ran, WALL_KEY when
 * it took wall samples; `sql_dropped`, `errors`, `fatal` and `truncated`
 * always. `sites`, `sql[].site` and `stacks` only for a request at least
 * slow_threshold_ms long, failed or forced (end()).
 */
final class Messages
{
    // The protocol's limits (docs/protocol.md "Limits"); LimitsTest checks
    // them against testdata/protocol/limits.json, which the daemon's tests
    // read too. Profiler\Frames refers to the ones it shares.
    public const MAX_URI = 2048;
    public const MAX_CID = 128;
    public const MAX_ERROR_TYPE = 128;
    public const MAX_ERROR_MSG = 2048;
    public const MAX_ERROR_FILE = 1024;
    public const MAX_FUNCTION = 512;
    public const MAX_FUNCTIONS = 500;
    public const MAX_STACKS = 200;
    /** Entries of the end message's wall-time list (WALL_KEY). */
    public const MAX_WALL = 500;
    /**
     * The end message's list of where the worker spent wall time:
     * [{n: function or blocking call, c: caller, s: seconds}], heaviest
     * first. (`wall` itself is the request's wall time.)
     */
    public const WALL_KEY = 'wall_fn';
    public const MAX_STACK = 8192;
    public const MAX_FRAMES = 128;
    public const MAX_PROFILER = 16;
    /** `exit` is clamped to -MAX_EXIT..MAX_EXIT. */
    public const MAX_EXIT = 255;
    /** Entries of `sites`: statements of further call sites get none. */
    public const MAX_SITES = 200;
    /** Frames of one site; sql_site_frames is at most this. */
    public const MAX_SITE_FRAMES = 8;
    /** Bytes of one frame of a site. */
    public const MAX_SITE_FRAME = 1024;
    /** The daemon's limit for counters (drops, samples, calls). */
    public const MAX_COUNT = 2147483648;

    /** The protocol version sent: durations and times in integer microseconds. */
    public const VERSION = 2;

    /** The daemon's largest duration, in seconds (30 days): longer ones are sent as this. */
    private const MAX_SECONDS = 2592000;
    private const MAX_MICROS = self::MAX_SECONDS * 1000000;
    /**
     * Microseconds are PHP integers where those have 64 bits. A 32-bit PHP
     * sends them as integral floats instead (its integers end at 35 minutes
     * of microseconds), which the daemon accepts as well.
     */
    private const INT_MICROS = \PHP_INT_SIZE >= 8;

    /** Statement texts are redacted after a first cut this much longer than sql_max_length. */
    private const SQL_REDACT_MARGIN = 1024;

    public function __construct(
        private readonly Redactor $redactor,
        private readonly int $sqlMaxLength = 2048,
        private readonly int $slowThresholdMs = 0,
    ) {
    }

    /** @return array<string, mixed> */
    public function start(RequestRecord $r, float $ts, int $dropped): array
    {
        return $this->head('start', $r, $ts, $dropped, true);
    }

    /**
     * @param list<string> $stack outermost frame first
     * @return array<string, mixed>
     */
    public function progress(RequestRecord $r, float $ts, int $dropped, float $elapsed, int $seq, int $mem, float $cpu, array $stack): array
    {
        $m = ['v' => self::VERSION, 'type' => 'progress', 'id' => $r->id, 'pid' => $r->pid, 'project' => $r->project, 'ts' => self::us($ts)];
        if ($dropped > 0) {
            $m['dropped'] = $dropped;
        }
        $frames = [];
        foreach (\array_slice($stack, -self::MAX_FRAMES) as $f) {
            $frames[] = Text::sanitize((string) $f, self::MAX_FUNCTION);
        }
        $m['endpoint'] = $r->endpoint;
        $m['elapsed'] = self::micros($elapsed);
        $m['seq'] = $seq;
        $m['mem'] = \max(0, $mem);
        $m['cpu'] = self::micros($cpu);
        $m['stack'] = $frames;
        return $m;
    }

    /**
     * @param array{fn?: list<array<string, mixed>>, stacks?: list<array<string, mixed>>, period?: ?float}|null $profile what Profiler::stop() returned
     * @return array<string, mixed>
     */
    public function end(
        RequestRecord $r,
        float $ts,
        int $dropped,
        float $wall,
        float $cpuUser,
        float $cpuSys,
        int $memPeak,
        int $status,
        ?array $profile,
        string $profiler,
    ): array {
        $m = $this->head('end', $r, $ts, $dropped, false);
        $m['status'] = $status >= 0 && $status <= 999 ? $status : 0;
        if ($r->exit !== null) {
            $m['exit'] = \max(-self::MAX_EXIT, \min(self::MAX_EXIT, $r->exit));
        }
        $m['wall'] = self::micros($wall);
        $m['cpu_user'] = self::micros($cpuUser);
        $m['cpu_sys'] = self::micros($cpuSys);
        $m['mem_peak'] = \max(0, $memPeak);

        // Call sites and collapsed stacks serve the raw traces of the
        // requests the daemon ships whatever its sampling: slow, failed
        // (its rules: fatal, an uncaught exception, 5xx, a CLI exit
        // status other than 0) or forced. Only these format their sites.
        $detail = $wall * 1000 >= $this->slowThresholdMs || $r->forced || $r->fatal || $r->uncaughtException
            || $status >= 500 || ($r->exit !== null && $r->exit !== 0);
        $sites = $detail ? $r->sites() : [];

        $truncated = [];
        $sql = [];
        $cut = false;
        $texts = [];
        $comment = $r->appendedComment();
        foreach ($r->sql() as [$q, $d, $rows, $failed, $site]) {
            if (!isset($texts[$q])) {
                // sqlText(), inline for the usual statement: nothing to
                // redact or sanitize, not too long. This runs for every one.
                $texts[$q] = \strlen($q) <= $this->sqlMaxLength && \preg_match(Text::UNUSUAL, $q) !== 1 && $this->redactor->sqlUntouched($q, $comment)
                    ? [$q, false] : $this->sqlText($q);
            }
            [$text, $trunc] = $texts[$q];
            // micros() and us(), inline: this runs for every statement.
            $s = ['q' => $text, 'd' => $d > 0.0 ? ($d >= self::MAX_SECONDS ? self::MAX_MICROS : (self::INT_MICROS ? (int) \round($d * 1e6) : \round($d * 1e6))) : 0];
            if ($rows !== null && $rows >= 0) {
                $s['rows'] = $rows;
            }
            if ($failed) {
                $s['err'] = true;
            }
            if ($trunc) {
                $s['trunc'] = true;
                $cut = true;
            }
            if ($site >= 0 && $detail) {
                $s['site'] = $site;
            }
            $sql[] = $s;
        }
        if ($cut) {
            $truncated[] = 'sql.q';
        }
        $m['sql'] = $sql;
        $m['sql_dropped'] = \min($r->sqlDropped(), self::MAX_COUNT);
        if ($sites !== []) {
            $m['sites'] = self::sites($sites);
        }

        if ($profile !== null) {
            $fn = $profile['fn'] ?? [];
            $m['fn'] = \is_array($fn) ? self::functions($fn) : [];
            if ($detail) {
                $stacks = $profile['stacks'] ?? [];
                $m['stacks'] = \is_array($stacks) ? self::stacks($stacks) : [];
            }
            $wallFn = $profile['wall'] ?? null;
            if (\is_array($wallFn) && $wallFn !== []) {
                $m[self::WALL_KEY] = self::wallEntries($wallFn);
            }
            $m['profiler'] = Text::sanitize($profiler, self::MAX_PROFILER);
            $period = $profile['period'] ?? null;
            if (\is_float($period) || \is_int($period)) {
                $m['period'] = self::micros(\min(60.0, (float) $period));
            }
        } else {
            $m['profiler'] = 'none';
        }

        $errors = [];
        foreach ($r->errors() as [$type, $msg, $file, $line]) {
            $e = ['type' => Text::sanitize($type, self::MAX_ERROR_TYPE)];
            if ($msg !== '') {
                $e['msg'] = Text::sanitize($this->redactor->text(Text::cut($msg, self::MAX_ERROR_MSG * 2)), self::MAX_ERROR_MSG);
            }
            if ($file !== '') {
                $e['file'] = Text::sanitize($file, self::MAX_ERROR_FILE);
            }
            $e['line'] = \max(0, $line);
            $errors[] = $e;
        }
        $m['errors'] = $errors;
        if ($errors !== [] || $r->errorsDropped() > 0) {
            $m['errors_dropped'] = \min($r->errorsDropped(), self::MAX_COUNT);
        }
        $m['fatal'] = $r->fatal;
        if ($r->forced) {
            $m['forced'] = true;
        }
        $m['truncated'] = $truncated;
        return $m;
    }

    /**
     * A statement text as sent: redacted, sanitized and cut to
     * sql_max_length; the flag says whether it was cut.
     *
     * @return array{0: string, 1: bool}
     */
    public function sqlText(string $q): array
    {
        $trunc = false;
        if (\strlen($q) > $this->sqlMaxLength + self::SQL_REDACT_MARGIN) {
            // Redaction cost grows with the text: redact a first cut only.
            $q = Text::cut($q, $this->sqlMaxLength + self::SQL_REDACT_MARGIN);
            $trunc = true;
        }
        $q = Text::sanitize($this->redactor->sql($q), \PHP_INT_MAX);
        if (\strlen($q) > $this->sqlMaxLength) {
            $q = Text::cut($q, $this->sqlMaxLength);
            $trunc = true;
        }
        return [$q, $trunc];
    }

    /**
     * The identity and request fields that start and end begin with, in
     * the protocol's order; `dropped` always when $alwaysDropped, else only
     * when non-zero. One function: these run on every request.
     *
     * @return array<string, mixed>
     */
    private function head(string $type, RequestRecord $r, float $ts, int $dropped, bool $alwaysDropped): array
    {
        // us(), inline
        $m = ['v' => self::VERSION, 'type' => $type, 'id' => $r->id, 'pid' => $r->pid, 'project' => $r->project, 'ts' => self::INT_MICROS ? (int) \round($ts * 1e6) : \round($ts * 1e6)];
        if ($r->host !== '') {
            $m['host'] = $r->host;
        }
        if ($r->pool !== '') {
            $m['pool'] = $r->pool;
        }
        if ($r->sapi !== '') {
            $m['sapi'] = Text::sanitize($r->sapi, 32);
        }
        if ($alwaysDropped || $dropped > 0) {
            $m['dropped'] = $dropped;
        }
        $m['cid'] = $r->cid;
        if ($r->traceId !== '') {
            $m['trace_id'] = $r->traceId;
        }
        $m['method'] = $r->method;
        $m['uri'] = $r->uri;
        $m['endpoint'] = $r->endpoint;
        $m['started'] = self::INT_MICROS ? (int) \round($r->started * 1e6) : \round($r->started * 1e6);
        return $m;
    }

    /**
     * The call-site table as sent: at most MAX_SITE_FRAMES frames a site,
     * each sanitized and cut to MAX_SITE_FRAME bytes. (The record holds at
     * most MAX_SITES.)
     *
     * @param list<list<string>> $sites
     * @return list<list<string>>
     */
    private static function sites(array $sites): array
    {
        $out = [];
        foreach ($sites as $frames) {
            if (\count($frames) > self::MAX_SITE_FRAMES) {
                $frames = \array_slice($frames, 0, self::MAX_SITE_FRAMES);
            }
            // One test for the whole site: frames are printable ASCII paths
            // and names nearly always; only an unusual one is sanitized.
            $joined = \implode("\n", $frames);
            if (\strlen($joined) > self::MAX_SITE_FRAME || \preg_match(Text::UNUSUAL, $joined) === 1) {
                foreach ($frames as $i => $f) {
                    $frames[$i] = Text::sanitize($f, self::MAX_SITE_FRAME);
                }
            }
            $out[] = $frames;
        }
        return $out;
    }

    /**
     * A duration in seconds as sent: integer microseconds (JSON encodes an
     * integer for a fraction of what a float costs), within the daemon's
     * range.
     */
    public static function micros(float $s): int|float
    {
        if (!($s > 0.0)) {
            return 0; // negative, zero and NaN
        }
        // us(), inline: three of these in every end message
        return $s >= self::MAX_SECONDS ? self::MAX_MICROS : (self::INT_MICROS ? (int) \round($s * 1e6) : \round($s * 1e6));
    }

    /** Seconds (a duration or a Unix time) as the protocol's microseconds: an integer (INT_MICROS). */
    private static function us(float $s): int|float
    {
        return self::INT_MICROS ? (int) \round($s * 1e6) : \round($s * 1e6);
    }

    /**
     * The profiler's functions, defensively held to the protocol: at most
     * 500, names non-empty and at most 512 bytes, 0 <= self <= incl.
     *
     * @param list<array<string, mixed>> $fns
     * @return list<array<string, mixed>>
     */
    private static function functions(array $fns): array
    {
        if (\count($fns) > self::MAX_FUNCTIONS) {
            $fns = \array_slice($fns, 0, self::MAX_FUNCTIONS);
        }
        $out = [];
        foreach ($fns as $f) {
            if (!\is_array($f) || !\is_string($f['n'] ?? null) || !\is_numeric($f['self'] ?? null) || !\is_numeric($f['incl'] ?? null)) {
                continue;
            }
            $n = $f['n'];
            if ($n === '') {
                continue;
            }
            if (\strlen($n) > self::MAX_FUNCTION) {
                $n = Text::cut($n, self::MAX_FUNCTION);
            }
            $incl = self::micros((float) ($f['incl'] ?? 0.0));
            $self = self::micros((float) ($f['self'] ?? 0.0));
            $e = ['n' => $n, 'self' => $self > $incl ? $incl : $self, 'incl' => $incl];
            if (isset($f['calls']) && \is_numeric($f['calls'])) {
                $e['calls'] = \max(0, \min(self::MAX_COUNT, (int) $f['calls']));
            }
            $out[] = $e;
        }
        return $out;
    }

    /**
     * The wall-time entries, held to the protocol: at most MAX_WALL, `n`
     * 1–512 bytes, `c` 0–512 bytes, `s` a duration.
     *
     * @param list<array<string, mixed>> $entries
     * @return list<array{n: string, c: string, s: int|float}>
     */
    private static function wallEntries(array $entries): array
    {
        if (\count($entries) > self::MAX_WALL) {
            $entries = \array_slice($entries, 0, self::MAX_WALL);
        }
        $out = [];
        foreach ($entries as $e) {
            if (!\is_array($e) || !\is_string($e['n'] ?? null) || $e['n'] === '' || !\is_numeric($e['s'] ?? null)) {
                continue;
            }
            $c = $e['c'] ?? '';
            $out[] = [
                'n' => Text::sanitize($e['n'], self::MAX_FUNCTION),
                'c' => \is_string($c) ? Text::sanitize($c, self::MAX_FUNCTION) : '',
                's' => self::micros((float) $e['s']),
            ];
        }
        return $out;
    }

    /**
     * @param list<array<string, mixed>> $stacks
     * @return list<array{s: string, n: int}>
     */
    private static function stacks(array $stacks): array
    {
        if (\count($stacks) > self::MAX_STACKS) {
            $stacks = \array_slice($stacks, 0, self::MAX_STACKS);
        }
        $out = [];
        foreach ($stacks as $st) {
            if (!\is_array($st) || !\is_string($st['s'] ?? null) || !\is_int($st['n'] ?? null)) {
                continue;
            }
            $s = $st['s'];
            $n = $st['n'];
            if ($n < 1) {
                continue;
            }
            $out[] = ['s' => \strlen($s) > self::MAX_STACK ? Text::cut($s, self::MAX_STACK) : $s, 'n' => \min($n, self::MAX_COUNT)];
        }
        return $out;
    }
}
