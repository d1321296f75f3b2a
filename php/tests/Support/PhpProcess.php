<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

/**
 * Runs a PHP CLI script in a child process with the agent prepended, the
 * way auto_prepend_file runs it in production, and captures its output.
 */
final class PhpProcess
{
    public function __construct(
        public readonly int $exitCode,
        public readonly string $stdout,
        public readonly string $stderr,
        public readonly string $errorLog,
    ) {
    }

    /**
     * @param list<string> $args
     * @param array<string, string> $env environment of the child (BITVILLE_APM_* etc.)
     * @param array<string, string> $ini -d settings
     * @param (callable(): void)|null $whileRunning called every few milliseconds while the child runs
     */
    public static function run(string $script, array $args = [], array $env = [], array $ini = [], ?string $cwd = null, bool $prepend = true, float $timeout = 60.0, ?callable $whileRunning = null): self
    {
        $errorLog = tempnam(sys_get_temp_dir(), 'bitville-apm-errlog-');
        $cmd = [PHP_BINARY];
        $settings = ['display_errors' => 'stderr', 'log_errors' => '1', 'error_log' => $errorLog, 'error_reporting' => '-1'] + $ini;
        if ($prepend) {
            $settings['auto_prepend_file'] = dirname(__DIR__, 2) . '/bootstrap.php';
        }
        foreach ($settings as $k => $v) {
            $cmd[] = '-d';
            $cmd[] = $k . '=' . $v;
        }
        $cmd[] = $script;
        foreach ($args as $a) {
            $cmd[] = $a;
        }
        // A clean environment: only PATH, HOME and what the test gives, so the
        // developer's own BITVILLE_APM_* settings cannot leak in.
        $childEnv = $env + ['PATH' => (string) getenv('PATH'), 'HOME' => sys_get_temp_dir()];
        $p = proc_open($cmd, [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, $cwd, $childEnv);
        if (!is_resource($p)) {
            throw new \RuntimeException('cannot start ' . implode(' ', $cmd));
        }
        fclose($pipes[0]);
        stream_set_blocking($pipes[1], false);
        stream_set_blocking($pipes[2], false);
        $out = '';
        $err = '';
        $deadline = microtime(true) + $timeout;
        while (true) {
            $r = [$pipes[1], $pipes[2]];
            $w = null;
            $e = null;
            if ($whileRunning !== null) {
                $whileRunning();
            }
            if (@stream_select($r, $w, $e, 0, $whileRunning === null ? 50000 : 2000) > 0) {
                foreach ($r as $stream) {
                    $chunk = (string) fread($stream, 65536);
                    if ($stream === $pipes[1]) {
                        $out .= $chunk;
                    } else {
                        $err .= $chunk;
                    }
                }
            }
            $status = proc_get_status($p);
            if (!$status['running']) {
                if ($whileRunning !== null) {
                    $whileRunning();
                }
                $out .= (string) stream_get_contents($pipes[1]);
                $err .= (string) stream_get_contents($pipes[2]);
                $code = $status['exitcode'];
                break;
            }
            if (microtime(true) > $deadline) {
                proc_terminate($p, 9);
                throw new \RuntimeException("php $script did not finish within {$timeout}s; stderr: $err");
            }
        }
        fclose($pipes[1]);
        fclose($pipes[2]);
        proc_close($p);
        $log = (string) file_get_contents($errorLog);
        unlink($errorLog);
        return new self($code, $out, $err, $log);
    }
}
