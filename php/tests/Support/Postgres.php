<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

/**
 * A throwaway PostgreSQL cluster for the tests, in a temp dir, listening
 * only on a unix socket in that dir (no TCP port to collide with). One
 * cluster serves the whole test run; it is stopped and removed when the
 * PHP process ends. As root, the server runs as the postgres user.
 */
final class Postgres
{
    private static ?self $instance = null;

    private function __construct(public readonly string $dir, public readonly int $port, private readonly string $bin)
    {
    }

    /** The shared cluster, started on first use. Throws with a clear message when it cannot start. */
    public static function shared(): self
    {
        if (self::$instance === null) {
            self::$instance = self::start();
            register_shutdown_function([self::$instance, 'stop']);
        }
        return self::$instance;
    }

    public function dsn(string $db = 'postgres'): string
    {
        return sprintf('pgsql:host=%s;port=%d;dbname=%s;user=postgres', $this->dir, $this->port, $db);
    }

    public function stop(): void
    {
        if (!is_dir($this->dir)) {
            return;
        }
        self::exec(array_merge(self::asPostgres(), [$this->bin . '/pg_ctl', '-D', $this->dir . '/data', '-m', 'immediate', '-w', 'stop']), $out);
        TempDir::remove($this->dir);
    }

    private static function start(): self
    {
        $bin = self::binDir();
        $dir = TempDir::create('bitville-apm-pg-');
        if (posix_geteuid() === 0) {
            $pw = posix_getpwnam('postgres');
            if ($pw === false) {
                throw new \RuntimeException('running as root needs the postgres user (Debian package postgresql)');
            }
            chown($dir, $pw['uid']);
            chgrp($dir, $pw['gid']);
        }
        $port = 40000 + random_int(0, 9999);
        $data = $dir . '/data';
        if (self::exec(array_merge(self::asPostgres(), [$bin . '/initdb', '-D', $data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']), $out) !== 0) {
            TempDir::remove($dir);
            throw new \RuntimeException("initdb failed: $out");
        }
        $opts = sprintf("-c listen_addresses='' -c unix_socket_directories=%s -c port=%d -c fsync=off -c max_connections=20 -c shared_buffers=16MB", $dir, $port);
        if (self::exec(array_merge(self::asPostgres(), [$bin . '/pg_ctl', '-D', $data, '-o', $opts, '-l', $dir . '/server.log', '-w', '-t', '60', 'start']), $out) !== 0) {
            $log = (string) @file_get_contents($dir . '/server.log');
            TempDir::remove($dir);
            throw new \RuntimeException("pg_ctl start failed: $out $log");
        }
        return new self($dir, $port, $bin);
    }

    private static function binDir(): string
    {
        $dirs = glob('/usr/lib/postgresql/*/bin') ?: [];
        rsort($dirs, SORT_NATURAL);
        foreach ($dirs as $d) {
            if (is_executable($d . '/initdb')) {
                return $d;
            }
        }
        throw new \RuntimeException('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (Debian package postgresql)');
    }

    /** @return list<string> */
    private static function asPostgres(): array
    {
        return posix_geteuid() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
    }

    /** @param list<string> $cmd */
    private static function exec(array $cmd, ?string &$output): int
    {
        $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['redirect', 1]], $pipes, '/');
        if (!is_resource($p)) {
            $output = 'cannot run ' . $cmd[0];
            return 127;
        }
        $output = (string) stream_get_contents($pipes[1]);
        fclose($pipes[1]);
        return proc_close($p);
    }
}
