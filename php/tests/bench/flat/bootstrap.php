<?php

declare(strict_types=1);

/*
 * A measuring stick, not an agent: the floor (../floor_agent.php) plus most
 * of what the agent does on a request of the example shop in its default
 * mode, written flat (functions over arrays, two small PDO classes):
 * the settings' checks, the socket, the URI's redaction precheck, the
 * incoming correlation id, an error handler, and each statement through a
 * traced PDO with its sqlcommenter comment, its duration and rows and a
 * backtrace for its call site, listed in the end. A statement or URI that
 * would need redacting is only marked here, and there is no profiler,
 * spool, progress tick, exception handler or message fitting: what a flat
 * hot path in the agent would cost is at least this. Its messages pass the
 * daemon's decoder. Run it as another tree's agent:
 *
 *   BENCH_BEFORE=$PWD/php/tests/bench/flat make bench-php
 *   BENCH_VARIANTS="flat@$PWD/php/tests/bench/flat:" make bench-php-instructions
 *
 * (docs/performance.md, "What a minimal agent costs beside the agent").
 */

namespace Bitville\Apm\Pdo {
    class TracedPdo extends \PDO
    {
        public function __construct(string $dsn, ?string $username = null, ?string $password = null, ?array $options = null)
        {
            if (isset($GLOBALS['__bvp'])) {
                $options ??= [];
                $options[\PDO::ATTR_STATEMENT_CLASS] = [TracedStatement::class];
            }
            parent::__construct($dsn, $username, $password, $options);
        }

        public function prepare(string $query, array $options = []): \PDOStatement|false
        {
            $st = &$GLOBALS['__bvp'];
            if ($st !== null && !\str_contains($query, '/*') && !\str_contains($query, '--')) {
                $query = \rtrim($query) . ' ' . $st['comment'];
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
            $ok = parent::execute($params);
            $ns = \hrtime(true) - $t;
            $st['sql'][] = [$this->queryString, $ns, $ok ? $this->rowCount() : null, !$ok, \debug_backtrace(\DEBUG_BACKTRACE_IGNORE_ARGS, 8)];
            return $ok;
        }
    }
}

namespace {
    function bitville_proto(): void
    {
        $s = $_SERVER;
        $sock = $s['BITVILLE_APM_SOCKET'] ?? '';
        $project = $s['BITVILLE_APM_PROJECT'] ?? '';
        if (($s['BITVILLE_APM_ENABLED'] ?? '') !== '1' || !is_string($sock) || !is_string($project)
            || preg_match('/^[A-Za-z0-9._-]{1,64}$/', $project) !== 1 || strlen($sock) > 107 || !file_exists($sock)) {
            return;
        }
        is_file('/etc/bitville-apm/php-agent.ini');
        $t0 = microtime(true);
        $h0 = hrtime(true);
        $rnd = random_bytes(32);
        $path = (string) ($s['REQUEST_URI'] ?? '/');
        $path = substr($path, 0, strcspn($path, '?#'));
        if (preg_match('/p(?:ass(?:word|wd|phrase)|wd|rivate_key|hpsessid)|s(?:e(?:cret|ssion)|ignature)|token|a(?:pi(?:_key|key|\-key)|ccess_key|uthorization)|c(?:redential|ookie|ard_?number|cnum|v[vc])|iban|bearer\s|basic\s|:\/\/[^\s\/@]*:[^\s\/@]*@|eyJ|\d(?:[ -]?\d){12}/i', $path) === 1 || preg_match('/[^\x20-\x7E\t\r\n]/', $path) === 1) {
            $path = '/[would be redacted]';
        }
        $route = strpbrk($path, '0123456789') !== false ? (string) preg_replace('#(?<=/)\d+(?=/|$)#', '{id}', $path) : $path;
        $method = (string) ($s['REQUEST_METHOD'] ?? 'GET');
        $cid = $s['HTTP_X_CORRELATION_ID'] ?? null;
        if (!is_string($cid) || preg_match('/^[A-Za-z0-9._:\/+=@-]{1,128}$/', $cid) !== 1) {
            $h = bin2hex(substr($rnd, 16));
            $cid = substr($h, 0, 8) . '-' . substr($h, 8, 4) . '-4' . substr($h, 13, 3) . '-' . dechex(8 | (hexdec($h[16]) & 3)) . substr($h, 17, 3) . '-' . substr($h, 20, 12);
        }
        $endpoint = $method . ' ' . $route;
        $pid = getmypid();
        $m = [
            'v' => 2, 'type' => 'start', 'id' => bin2hex(substr($rnd, 0, 16)), 'pid' => $pid, 'project' => $project,
            'ts' => (int) round($t0 * 1e6), 'host' => (string) gethostname(), 'sapi' => PHP_SAPI, 'dropped' => 0, 'cid' => $cid,
            'method' => $method, 'uri' => $path, 'endpoint' => $endpoint, 'started' => (int) round((float) ($s['REQUEST_TIME_FLOAT'] ?? $t0) * 1e6),
        ];
        $out = @stream_socket_client('udg://' . $sock, $errno, $errstr, 0.001, STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
        if ($out === false) {
            return;
        }
        if (stream_get_meta_data($out)['blocked']) {
            stream_set_blocking($out, false);
        }
        @fwrite($out, (string) json_encode($m, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE));
        $GLOBALS['__bvp'] = ['sql' => [], 'comment' => "/*endpoint='" . rawurlencode($endpoint) . "'*/", 'errors' => 0];
        $timer = null;
        if (class_exists(ExcimerTimer::class, false)) {
            $timer = new ExcimerTimer();
            $timer->setEventType(EXCIMER_REAL);
            $timer->setInterval(1);
            $timer->setPeriod(5);
            $timer->setCallback(static function (): void {
            });
            $timer->start();
        }
        $prevErr = set_error_handler(static function (int $no, string $msg, string $file = '', int $line = 0) use (&$prevErr): bool {
            $GLOBALS['__bvp']['errors']++;
            return $prevErr !== null ? (bool) $prevErr($no, $msg, $file, $line) : false;
        });
        $r0 = getrusage();
        register_shutdown_function(static function () use ($m, $out, $h0, $t0, $r0, &$timer): void {
            register_shutdown_function(static function () use ($m, $out, $h0, $t0, $r0, &$timer): void {
                $timer?->stop();
                $timer = null;
                if (getmypid() !== $m['pid']) {
                    return;
                }
                error_get_last();
                $status = http_response_code();
                if (function_exists('fastcgi_finish_request')) {
                    fastcgi_finish_request();
                }
                $e = (hrtime(true) - $h0) / 1e9;
                $r1 = getrusage();
                $st = $GLOBALS['__bvp'];
                unset($m['dropped']);
                $m['type'] = 'end';
                $m['ts'] = (int) round(($t0 + $e) * 1e6);
                $m['status'] = is_int($status) ? $status : 0;
                $m['wall'] = (int) round($e * 1e6);
                $m['cpu_user'] = ($r1['ru_utime.tv_sec'] - $r0['ru_utime.tv_sec']) * 1000000 + $r1['ru_utime.tv_usec'] - $r0['ru_utime.tv_usec'];
                $m['cpu_sys'] = ($r1['ru_stime.tv_sec'] - $r0['ru_stime.tv_sec']) * 1000000 + $r1['ru_stime.tv_usec'] - $r0['ru_stime.tv_usec'];
                $m['mem_peak'] = memory_get_peak_usage(true);
                $sql = [];
                foreach ($st['sql'] as [$q, $ns, $rows, $failed]) {
                    if (strlen($q) > 2048 || preg_match('/[^\x20-\x7E\t\r\n]/', $q) === 1 || str_contains(substr($q, 0, -strlen($st['comment'])), "'")) {
                        $q = '[would be redacted]';
                    }
                    $row = ['q' => $q, 'd' => (int) round($ns / 1e3)];
                    if ($rows !== null) {
                        $row['rows'] = $rows;
                    }
                    if ($failed) {
                        $row['err'] = true;
                    }
                    $sql[] = $row;
                }
                $m += ['sql' => $sql, 'sql_dropped' => 0, 'profiler' => 'none', 'errors' => [], 'fatal' => false, 'truncated' => []];
                @fwrite($out, (string) json_encode($m, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE));
            });
        });
    }

    bitville_proto();
}
