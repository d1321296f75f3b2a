<?php

declare(strict_types=1);

/*
 * A measuring stick, not an agent: what the agent does on a request of the
 * example shop in its default mode, written flat (functions over arrays,
 * closures, two small PDO classes), to measure what a rewrite of the hot
 * path in this shape would cost. On every request it does what the agent
 * does there:
 *
 * - the settings: every BITVILLE_APM_* variable set is found and checked by
 *   its type and range, as Config does, the file's absence checked;
 * - the ids (request id, incoming X-Correlation-ID or traceparent, else a
 *   fresh UUIDv4), the draws of sample_rate and excimer_request_rate;
 * - the method's test, the endpoint's three collapses and its cut, the URI's
 *   redaction precheck and sanitizing, the host's sanitizing;
 * - error and exception handlers chaining to the previous ones, the
 *   shutdown function registered twice, a guard object whose destructor
 *   sends the end if the shutdown functions never run;
 * - the drop counter (APCu's test), the spool made lazily on a failed send;
 * - one ExcimerTimer for the long-request mark and progress, at the same
 *   deadlines, its tick doing nothing here;
 * - start and end with every field the agent sends, each checked for the
 *   datagram's size and for strings the daemon would reject before it is
 *   sent;
 * - each statement through a traced PDO: its sqlcommenter comment, its
 *   duration and rows, a backtrace of the agent's depth held for its call
 *   site, the cap on statements; in the end each text's test for anything
 *   to redact, cut or sanitize, the call sites formatted only for a slow or
 *   failed request.
 *
 * Left out, because they run only on some requests and would cost the same
 * in either shape: the profiler of a drawn request (measure against the
 * agent with BITVILLE_APM_EXCIMER_REQUEST_RATE=0), the redaction of a text
 * that needs it (marked here instead), the formatting of call sites, the
 * fitting of an oversized message, the spool's writes, progress messages.
 * Its messages pass the daemon's decoder. Run it as another tree's agent:
 *
 *   BENCH_VARIANTS="flat@$PWD/php/tests/bench/flat:" make bench-php-instructions
 *   BENCH_BEFORE=$PWD/php/tests/bench/flat make bench-php
 *
 * (docs/performance.md, "What a minimal agent costs beside the agent" and
 * "A faithful flat path").
 */

namespace Bitville\Apm\Pdo {
    class TracedPdo extends \PDO
    {
        public function __construct(string $dsn, ?string $username = null, ?string $password = null, ?array $options = null)
        {
            if (isset($GLOBALS['__bvp']) && empty($options[\PDO::ATTR_PERSISTENT]) && !isset($options[\PDO::ATTR_STATEMENT_CLASS])) {
                $options ??= [];
                $options[\PDO::ATTR_STATEMENT_CLASS] = [TracedStatement::class];
            }
            parent::__construct($dsn, $username, $password, $options);
        }

        public function prepare(string $query, array $options = []): \PDOStatement|false
        {
            $st = &$GLOBALS['__bvp'];
            if ($st !== null && $st['comment'] !== '' && !\str_contains($query, '/*') && !\str_contains($query, '--')) {
                $body = \rtrim($query);
                if ($body !== '') {
                    $query = $body[-1] === ';' ? \rtrim(\substr($body, 0, -1)) . ' ' . $st['comment'] . ';' : $body . ' ' . $st['comment'];
                }
            }
            return parent::prepare($query, $options);
        }
    }

    class TracedStatement extends \PDOStatement
    {
        public function execute(?array $params = null): bool
        {
            $st = &$GLOBALS['__bvp'];
            if ($st === null) {
                return parent::execute($params);
            }
            $t = \hrtime(true);
            try {
                $ok = parent::execute($params);
            } catch (\Throwable $e) {
                \bitville_flat_sql($st, $this->queryString, \hrtime(true) - $t, null, true);
                throw $e;
            }
            $ns = \hrtime(true) - $t;
            \bitville_flat_sql($st, $this->queryString, $ns, $ok ? $this->rowCount() : null, !$ok);
            return $ok;
        }
    }
}

namespace {
    /** A statement: listed with a held backtrace for its site, or only counted past the cap. */
    function bitville_flat_sql(array &$st, string $q, int $ns, ?int $rows, bool $failed): void
    {
        if ($st['n'] >= $st['max']) {
            $st['sql_dropped']++;
            return;
        }
        $st['n']++;
        $site = -1;
        if ($st['frames'] > 0) {
            $limit = $st['frames'] + 24;
            $trace = \debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS, $limit);
            $st['traces'][] = [$trace, \count($trace) < $limit];
            $site = \count($st['traces']) - 1;
        }
        $st['sql'][] = [$q, $ns, $rows, $failed, $site];
    }

    /** Sends a message: its size and strings checked first, as the agent's encoder does. */
    function bitville_flat_send(array &$st, array $m): void
    {
        $json = \json_encode($m, \JSON_UNESCAPED_SLASHES | \JSON_UNESCAPED_UNICODE | \JSON_INVALID_UTF8_SUBSTITUTE | \JSON_PRESERVE_ZERO_FRACTION | \JSON_PARTIAL_OUTPUT_ON_ERROR);
        if (!\is_string($json) || \strlen($json) > 65536 || \str_contains($json, '\u00') || \str_contains($json, '\b') || \str_contains($json, '\f') || \str_contains($json, "\x7F")) {
            $st['dropped']++; // the agent fits or cleans it here
            return;
        }
        $out = $st['out'];
        if ($out === null) {
            $out = @\stream_socket_client('udg://' . $st['socket'], $errno, $errstr, 0.001, \STREAM_CLIENT_CONNECT | \STREAM_CLIENT_PERSISTENT);
            if ($out === false) {
                $out = null;
            } elseif (\stream_get_meta_data($out)['blocked']) {
                \stream_set_blocking($out, false);
            }
            $st['out'] = $out;
        }
        if ($out !== null && @\fwrite($out, $json) === \strlen($json)) {
            $st['dropped'] = 0;
            return;
        }
        $st['spool'] ??= ($st['makeSpool'])();
        $st['dropped']++;
    }

    /** The end: measured, built with every field the agent sends, sent. Runs once. */
    function bitville_flat_end(bool $finishRequest): void
    {
        $st = &$GLOBALS['__bvp'];
        if ($st === null || $st['ended']) {
            return;
        }
        $st['ended'] = true;
        $st['timer']?->stop();
        $st['timer'] = null;
        if (\getmypid() !== $st['m']['pid']) {
            return;
        }
        $last = \error_get_last();
        if ($last !== null && ($last['type'] & (\E_ERROR | \E_PARSE | \E_CORE_ERROR | \E_COMPILE_ERROR | \E_USER_ERROR | \E_RECOVERABLE_ERROR)) !== 0) {
            $st['fatal'] = true;
            $st['errors'][] = [$last['type'] === \E_ERROR ? 'E_ERROR' : 'E_FATAL', $last['message'], $last['file'], $last['line']];
        }
        $status = \http_response_code();
        $status = \is_int($status) && $status >= 0 && $status <= 999 ? $status : 0;
        if ($finishRequest && \PHP_SAPI === 'fpm-fcgi' && \function_exists('fastcgi_finish_request')) {
            fastcgi_finish_request();
        }
        $e = (\hrtime(true) - $st['h0']) / 1e9;
        $r1 = \getrusage();
        $r0 = $st['r0'];
        $m = $st['m'];
        unset($m['dropped']);
        $m['type'] = 'end';
        $m['ts'] = (int) \round(($st['t0'] + $e) * 1e6);
        if ($st['dropped'] > 0) {
            $m['dropped'] = $st['dropped'];
        }
        $m['status'] = $status;
        $wall = $st['t0'] - $st['started'] + $e;
        $m['wall'] = $wall > 0.0 ? (int) \round($wall * 1e6) : 0;
        $m['cpu_user'] = \max(0, ($r1['ru_utime.tv_sec'] - $r0['ru_utime.tv_sec']) * 1000000 + $r1['ru_utime.tv_usec'] - $r0['ru_utime.tv_usec']);
        $m['cpu_sys'] = \max(0, ($r1['ru_stime.tv_sec'] - $r0['ru_stime.tv_sec']) * 1000000 + $r1['ru_stime.tv_usec'] - $r0['ru_stime.tv_usec']);
        $m['mem_peak'] = \memory_get_peak_usage(true);
        $detail = $wall * 1000 >= $st['slow'] || $st['forced'] || $st['fatal'] || $st['uncaught'] || $status >= 500;
        $sql = [];
        $texts = [];
        $comment = $st['comment'];
        foreach ($st['sql'] as [$q, $ns, $rows, $failed, $site]) {
            if (!isset($texts[$q])) {
                $quote = \strpos($q, "'");
                $at = \strlen($q) - \strlen($comment) - ($q !== '' && $q[-1] === ';' ? 1 : 0);
                $texts[$q] = \strlen($q) <= $st['sqlMax'] && \preg_match('/[^\x20-\x7E\t\r\n]/', $q) !== 1
                    && ($quote === false || ($comment !== '' && $quote >= $at && $at >= 0 && \substr_compare($q, $comment, $at, \strlen($comment)) === 0)
                        || \preg_match('/p(?:ass(?:word|wd|phrase)|wd|rivate_key|hpsessid)|s(?:e(?:cret|ssion)|ignature)|token|a(?:pi(?:_key|key|\-key)|ccess_key|uthorization)|c(?:redential|ookie|ard_?number|cnum|v[vc])|iban|bearer\s|eyJ|\d(?:[ -]?\d){12}/i', $q) !== 1)
                    ? $q : '[would be redacted]';
            }
            $row = ['q' => $texts[$q], 'd' => $ns > 0 ? (int) \round($ns / 1e3) : 0];
            if ($rows !== null && $rows >= 0) {
                $row['rows'] = $rows;
            }
            if ($failed) {
                $row['err'] = true;
            }
            if ($site >= 0 && $detail) {
                $row['site'] = 0; // the agent formats the held backtraces here
            }
            $sql[] = $row;
        }
        $m['sql'] = $sql;
        $m['sql_dropped'] = $st['sql_dropped'];
        $m['profiler'] = 'none';
        $errors = [];
        foreach ($st['errors'] as [$type, $msg, $file, $line]) {
            $errors[] = ['type' => $type, 'msg' => \substr($msg, 0, 2048), 'file' => \substr($file, 0, 1024), 'line' => \max(0, $line)];
        }
        $m['errors'] = $errors;
        if ($errors !== []) {
            $m['errors_dropped'] = $st['errors_dropped'];
        }
        $m['fatal'] = $st['fatal'];
        if ($st['forced']) {
            $m['forced'] = true;
        }
        $m['truncated'] = []; // a text too long is marked above, not cut
        \bitville_flat_send($st, $m);
    }

    /** Sends the end from its destructor if the shutdown functions never ran. */
    final class BitvilleFlatGuard
    {
        public function __destruct()
        {
            \bitville_flat_end(false);
        }
    }

    /** The settings' checks of Config: each variable set, by its type and range. */
    function bitville_flat_settings(array $s): ?array
    {
        static $keys = [
            'BITVILLE_APM_ENABLED' => ['enabled', 'bool'], 'BITVILLE_APM_PROJECT' => ['project', 'string'], 'BITVILLE_APM_SOCKET' => ['socket', 'string'],
            'BITVILLE_APM_PROFILER' => ['profiler', 'string'], 'BITVILLE_APM_SAMPLE_RATE' => ['sample_rate', 'float', 0.0, 1.0],
            'BITVILLE_APM_SLOW_THRESHOLD_MS' => ['slow_threshold_ms', 'int', 0, 86400000], 'BITVILLE_APM_EXCIMER_PERIOD_MS' => ['excimer_period_ms', 'float', 0.01, 60000.0],
            'BITVILLE_APM_EXCIMER_REQUEST_RATE' => ['excimer_request_rate', 'float', 0.0, 1.0], 'BITVILLE_APM_EXCIMER_WALL_PERIOD_MS' => ['excimer_wall_period_ms', 'int', 1, 60000],
            'BITVILLE_APM_PROFILE_LONG_MS' => ['profile_long_ms', 'int', 0, 86400000], 'BITVILLE_APM_PROGRESS_AFTER_MS' => ['progress_after_ms', 'int', 0, 86400000],
            'BITVILLE_APM_PROGRESS_INTERVAL_MS' => ['progress_interval_ms', 'int', 0, 86400000], 'BITVILLE_APM_FORCE_HEADER_SECRET' => ['force_header_secret', 'string'],
            'BITVILLE_APM_ECHO_CORRELATION_HEADER' => ['echo_correlation_header', 'bool'], 'BITVILLE_APM_SQLCOMMENTER' => ['sqlcommenter', 'bool'],
            'BITVILLE_APM_SQLCOMMENTER_CORRELATION' => ['sqlcommenter_correlation', 'bool'], 'BITVILLE_APM_SQL_MAX_LENGTH' => ['sql_max_length', 'int', 64, 8192],
            'BITVILLE_APM_SQL_MAX_STATEMENTS' => ['sql_max_statements', 'int', 0, 500], 'BITVILLE_APM_SQL_SITE_FRAMES' => ['sql_site_frames', 'int', 0, 8],
            'BITVILLE_APM_ENDPOINT_RULES' => ['endpoint_rules', 'string'], 'BITVILLE_APM_REDACT_KEYS' => ['redact_keys', 'string'],
            'BITVILLE_APM_REDACT_PATTERNS' => ['redact_patterns', 'string'], 'BITVILLE_APM_SPOOL_DIR' => ['spool_dir', 'string'],
            'BITVILLE_APM_SPOOL_MAX_BYTES' => ['spool_max_bytes', 'int', 0, \PHP_INT_MAX], 'BITVILLE_APM_HOST' => ['host', 'string'],
            'BITVILLE_APM_POOL' => ['pool', 'string'], 'BITVILLE_APM_FINISH_REQUEST' => ['finish_request', 'bool'],
            'BITVILLE_APM_START_DELAY_MS' => ['start_delay_ms', 'int', 0, 86400000],
        ];
        $c = ['enabled' => false, 'project' => '', 'socket' => '', 'profiler' => 'excimer', 'sample_rate' => 0.0, 'slow_threshold_ms' => 1000,
            'excimer_request_rate' => 0.1, 'profile_long_ms' => 1000, 'progress_after_ms' => 5000, 'progress_interval_ms' => 5000,
            'force_header_secret' => '', 'sqlcommenter' => true, 'sql_max_length' => 2048, 'sql_max_statements' => 500, 'sql_site_frames' => 5,
            'host' => '', 'pool' => '', 'finish_request' => true];
        \is_file('/etc/bitville-apm/php-agent.ini');
        foreach (\array_intersect_key($keys, $s) as $name => $k) {
            $v = $s[$name];
            if (!\is_string($v)) {
                return null;
            }
            $v = \trim($v);
            $c[$k[0]] = match ($k[1]) {
                'bool' => $v === '1' || ($v !== '0' && \in_array(\strtolower($v), ['on', 'true', 'yes'], true)),
                'int' => \preg_match('/^\d{1,18}$/', $v) === 1 && (int) $v >= $k[2] && (int) $v <= $k[3] ? (int) $v : throw new \RuntimeException($name),
                'float' => \is_numeric($v) && (float) $v >= $k[2] && (float) $v <= $k[3] ? (float) $v : throw new \RuntimeException($name),
                default => $v,
            };
        }
        if (!$c['enabled'] || \preg_match('/^[A-Za-z0-9._-]{1,64}$/', $c['project']) !== 1 || $c['socket'] === '' || \strlen($c['socket']) > 107 || \str_contains($c['socket'], "\0")) {
            return null;
        }
        return $c;
    }

    function bitville_flat(): void
    {
        $s = $_SERVER;
        try {
            $c = \bitville_flat_settings($s);
        } catch (\RuntimeException) {
            \error_log('bitville-apm: bad setting');
            return;
        }
        if ($c === null || !\file_exists($c['socket'])) {
            return;
        }
        $t0 = \microtime(true);
        $h0 = \hrtime(true);
        $rnd = \random_bytes(32);
        $pid = \getmypid() ?: 1;
        $started = $s['REQUEST_TIME_FLOAT'] ?? null;
        $started = \is_float($started) && $started <= $t0 && $started > $t0 - 3600 ? $started : $t0;

        $method = (string) ($s['REQUEST_METHOD'] ?? 'GET');
        if (!isset(['GET' => 1, 'POST' => 1, 'PUT' => 1, 'PATCH' => 1, 'DELETE' => 1, 'HEAD' => 1, 'OPTIONS' => 1][$method])) {
            $method = \strtoupper($method);
            $method = \preg_match('/^[A-Z0-9_-]{1,16}$/', $method) === 1 ? $method : 'OTHER';
        }
        $path = (string) ($s['REQUEST_URI'] ?? '/');
        $path = \substr($path, 0, \strcspn($path, '?#'));
        if ($path === '' || $path[0] !== '/') {
            $path = '/';
        }
        $uri = $path;
        if (\preg_match('/p(?:ass(?:word|wd|phrase)|wd|rivate_key|hpsessid)|s(?:e(?:cret|ssion)|ignature)|token|a(?:pi(?:_key|key|\-key)|ccess_key|uthorization)|c(?:redential|ookie|ard_?number|cnum|v[vc])|iban|bearer\s|basic\s|:\/\/[^\s\/@]*:[^\s\/@]*@|eyJ|\d(?:[ -]?\d){12}/i', $uri) === 1) {
            $uri = '/[would be redacted]';
        }
        if (\preg_match('/[^\x20-\x7E\t\r\n]/', $uri) === 1) {
            $uri = '/[would be sanitized]';
        }
        $uri = \substr($uri, 0, 2048);
        $route = \strpbrk($path, '0123456789') !== false ? (string) \preg_replace([
            '#(?<=/)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)#',
            '#(?<=/)\d+(?=/|$)#',
            '#(?<=/)[0-9a-fA-F]{16,}(?=/|$)#',
        ], ['{uuid}', '{id}', '{hash}'], $path) : $path;
        $endpoint = $method . ' ' . $route;
        if (\preg_match('/[^\x20-\x7E\t\r\n]/', $endpoint) === 1 || \strlen($endpoint) > 256) {
            $endpoint = \substr((string) \preg_replace('/[^\x20-\x7E]/', '?', $endpoint), 0, 256);
        }
        $cid = $s['HTTP_X_CORRELATION_ID'] ?? null;
        $traceId = '';
        $tp = $s['HTTP_TRACEPARENT'] ?? null;
        if (\is_string($tp) && \preg_match('/^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/', \trim($tp), $tm) === 1 && $tm[1] !== 'ff') {
            $traceId = $tm[2];
        }
        if (!\is_string($cid) || \preg_match('/^[A-Za-z0-9._:\/+=@-]{1,128}$/', $cid) !== 1) {
            $cid = $traceId !== '' ? $traceId : null;
        }
        if ($cid === null) {
            $h = \bin2hex(\substr($rnd, 16));
            $h[12] = '4';
            $h[16] = '89ab'[\ord($rnd[24]) >> 4 & 3];
            $cid = (string) \preg_replace('/^(.{8})(.{4})(.{4})(.{4})/', '$1-$2-$3-$4-', $h);
        }
        $forced = false;
        if ($c['force_header_secret'] !== '') {
            $header = $s['HTTP_X_BITVILLE_PROFILE'] ?? null;
            $forced = \is_string($header) && \hash_equals($c['force_header_secret'], $header);
        }
        $host = $c['host'] !== '' ? $c['host'] : (string) \gethostname();
        if (\preg_match('/[^\x20-\x7E\t\r\n]/', $host) === 1 || \strlen($host) > 255) {
            $host = \substr((string) \preg_replace('/[^\x20-\x7E]/', '?', $host), 0, 255);
        }
        // The draws: sample_rate and excimer_request_rate, from the request id's bytes.
        $sampled = $c['sample_rate'] > 0.0 && \unpack('N', $rnd)[1] / 4294967296 < $c['sample_rate'];
        $rate = $c['excimer_request_rate'];
        $drawn = $rate >= 1.0 || ($rate > 0.0 && \unpack('N', $rnd, 4)[1] / 4294967296 < $rate);

        $apcu = \function_exists('apcu_enabled') && apcu_enabled();
        $m = ['v' => 2, 'type' => 'start', 'id' => \bin2hex(\substr($rnd, 0, 16)), 'pid' => $pid, 'project' => $c['project'],
            'ts' => (int) \round($t0 * 1e6), 'host' => $host];
        if ($c['pool'] !== '') {
            $m['pool'] = $c['pool'];
        }
        $m += ['sapi' => \PHP_SAPI, 'dropped' => 0, 'cid' => $cid];
        if ($traceId !== '') {
            $m['trace_id'] = $traceId;
        }
        $m += ['method' => $method, 'uri' => $uri, 'endpoint' => $endpoint, 'started' => (int) \round($started * 1e6)];

        $GLOBALS['__bvp'] = [
            'm' => $m, 't0' => $t0, 'h0' => $h0, 'started' => $started, 'r0' => null, 'socket' => $c['socket'], 'out' => null,
            'dropped' => 0, 'apcu' => $apcu, 'spool' => null, 'timer' => null, 'ended' => false, 'finishRequest' => $c['finish_request'],
            'makeSpool' => static function () use ($c, $pid) {
                return null; // the agent makes its Spool here when a directory is configured or derived
            },
            'comment' => $c['sqlcommenter'] ? "/*endpoint='" . \rawurlencode($endpoint) . "'*/" : '',
            'sql' => [], 'traces' => [], 'n' => 0, 'max' => $c['sql_max_statements'], 'sql_dropped' => 0, 'frames' => $c['sql_site_frames'],
            'sqlMax' => $c['sql_max_length'], 'slow' => $c['slow_threshold_ms'], 'forced' => $forced || $sampled, 'drawn' => $drawn,
            'errors' => [], 'errors_dropped' => 0, 'counts' => [], 'fatal' => false, 'uncaught' => false,
        ];
        $st = &$GLOBALS['__bvp'];

        $prevErr = \set_error_handler(static function (int $no, string $msg, string $file = '', int $line = 0) use (&$prevErr): mixed {
            $st = &$GLOBALS['__bvp'];
            if ((\error_reporting() & $no) !== 0) {
                $st['counts'][$no] = ($st['counts'][$no] ?? 0) + 1;
                if (\count($st['errors']) < 50) {
                    $st['errors'][] = ['E_' . $no, $msg, $file, $line];
                } else {
                    $st['errors_dropped']++;
                }
            }
            return $prevErr !== null ? $prevErr($no, $msg, $file, $line) : false;
        });
        $prevExc = \set_exception_handler(static function (\Throwable $e) use (&$prevExc): void {
            $st = &$GLOBALS['__bvp'];
            $st['errors'][] = [\get_class($e), $e->getMessage(), $e->getFile(), $e->getLine()];
            $st['uncaught'] = true;
            if ($prevExc !== null) {
                $prevExc($e);
                return;
            }
            throw $e;
        });
        \register_shutdown_function(static function (): void {
            \register_shutdown_function('bitville_flat_end', $GLOBALS['__bvp']['finishRequest']);
        });
        $st['guard'] = new BitvilleFlatGuard();

        // One timer: the long-request mark, then progress (min of the deadlines).
        $long = $c['profiler'] !== 'off' ? $c['profile_long_ms'] : 0;
        $after = $c['progress_after_ms'];
        $first = \min($long > 0 ? $long : \PHP_INT_MAX, $after > 0 ? $after : \PHP_INT_MAX);
        if ($first < \PHP_INT_MAX && \class_exists(\ExcimerTimer::class, false)) {
            $timer = new \ExcimerTimer();
            $timer->setEventType(\EXCIMER_REAL);
            $timer->setInterval($first / 1000);
            $timer->setPeriod(($c['progress_interval_ms'] > 0 ? $c['progress_interval_ms'] : 86400000) / 1000);
            $timer->setCallback(static function (): void {
                // the agent's tick: the long-request mark, progress
            });
            @$timer->start();
            $st['timer'] = $timer;
        }
        \bitville_flat_send($st, $m);
        $st['r0'] = \getrusage();
    }

    bitville_flat();
}
