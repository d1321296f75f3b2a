<?php

declare(strict_types=1);

/*
 * A measuring stick, not an agent: the least a PHP agent of this design does
 * on every request, in one function. Served as the auto_prepend_file of a
 * pool by BenchmarkPHPFloor (`make bench-php-floor`) and by
 * BenchmarkPHPOverhead's floor setups (`make bench-php`), it reads the same
 * pool settings (BITVILLE_APM_ENABLED, _PROJECT, _SOCKET), checks the
 * socket, makes the ids and the endpoint, sends a `start` and, after two
 * shutdown functions, an `end` built as arrays over one socket, and keeps an
 * ExcimerTimer armed while the request runs, as the agent does. It has none
 * of the agent's validation, redaction, sanitizing, fallbacks, SQL or
 * profiles. What the agent costs above this is the price of those and of
 * the code it runs through (docs/performance.md, "A lighter request path").
 */

function bitville_floor_agent(): void
{
    $s = $_SERVER;
    $sock = $s['BITVILLE_APM_SOCKET'] ?? '';
    if (($s['BITVILLE_APM_ENABLED'] ?? '') !== '1' || !is_string($sock) || !file_exists($sock)) {
        return;
    }
    $t0 = microtime(true);
    $h0 = hrtime(true);
    $rnd = random_bytes(32);
    $path = (string) ($s['REQUEST_URI'] ?? '/');
    $path = substr($path, 0, strcspn($path, '?#'));
    $route = strpbrk($path, '0123456789') !== false ? (string) preg_replace('#(?<=/)\d+(?=/|$)#', '{id}', $path) : $path;
    $method = (string) ($s['REQUEST_METHOD'] ?? 'GET');
    $m = [
        'v' => 2, 'type' => 'start', 'id' => bin2hex(substr($rnd, 0, 16)), 'pid' => getmypid(), 'project' => (string) ($s['BITVILLE_APM_PROJECT'] ?? ''),
        'ts' => (int) round($t0 * 1e6), 'host' => (string) gethostname(), 'sapi' => PHP_SAPI, 'dropped' => 0, 'cid' => bin2hex(substr($rnd, 16)),
        'method' => $method, 'uri' => $path, 'endpoint' => $method . ' ' . $route, 'started' => (int) round((float) ($s['REQUEST_TIME_FLOAT'] ?? $t0) * 1e6),
    ];
    $out = stream_socket_client('udg://' . $sock, $errno, $errstr, 0.001, STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT);
    if ($out === false) {
        return;
    }
    stream_set_blocking($out, false);
    @fwrite($out, (string) json_encode($m, JSON_UNESCAPED_SLASHES));
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
    $r0 = getrusage();
    register_shutdown_function(static function () use ($m, $out, $h0, $t0, $r0, &$timer): void {
        register_shutdown_function(static function () use ($m, $out, $h0, $t0, $r0, &$timer): void {
            $timer?->stop();
            $timer = null;
            $status = http_response_code();
            if (function_exists('fastcgi_finish_request')) {
                fastcgi_finish_request();
            }
            $e = (hrtime(true) - $h0) / 1e9;
            $r1 = getrusage();
            unset($m['dropped']);
            $m['type'] = 'end';
            $m['ts'] = (int) round(($t0 + $e) * 1e6);
            $m['status'] = is_int($status) ? $status : 0;
            $m['wall'] = (int) round($e * 1e6);
            $m['cpu_user'] = ($r1['ru_utime.tv_sec'] - $r0['ru_utime.tv_sec']) * 1000000 + $r1['ru_utime.tv_usec'] - $r0['ru_utime.tv_usec'];
            $m['cpu_sys'] = ($r1['ru_stime.tv_sec'] - $r0['ru_stime.tv_sec']) * 1000000 + $r1['ru_stime.tv_usec'] - $r0['ru_stime.tv_usec'];
            $m['mem_peak'] = memory_get_peak_usage(true);
            $m += ['sql' => [], 'sql_dropped' => 0, 'profiler' => 'none', 'errors' => [], 'fatal' => false, 'truncated' => []];
            @fwrite($out, (string) json_encode($m, JSON_UNESCAPED_SLASHES));
        });
    });
}

bitville_floor_agent();
