<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

/**
 * A unix datagram socket bound by a test, standing in for the daemon: it
 * receives what the agent sends.
 */
final class DatagramServer
{
    public readonly string $path;
    private ?\Socket $socket;

    public function __construct(string $dir, string $name = 'agent.sock')
    {
        $this->path = $dir . '/' . $name;
        $s = socket_create(AF_UNIX, SOCK_DGRAM, 0);
        if ($s === false || !socket_bind($s, $this->path)) {
            throw new \RuntimeException('cannot bind ' . $this->path);
        }
        chmod($this->path, 0777);
        socket_set_nonblock($s);
        $this->socket = $s;
    }

    /** Every datagram queued now. @return list<string> */
    public function drain(): array
    {
        $out = [];
        while (($d = $this->receiveOne()) !== null) {
            $out[] = $d;
        }
        return $out;
    }

    /**
     * Datagrams until $count arrived or $timeout seconds passed (a generous
     * deadline, polled: never a timing assertion).
     *
     * @return list<string>
     */
    public function receive(int $count, float $timeout = 10.0): array
    {
        $out = [];
        $deadline = microtime(true) + $timeout;
        while (count($out) < $count && microtime(true) < $deadline) {
            $d = $this->receiveOne();
            if ($d === null) {
                usleep(2000);
                continue;
            }
            $out[] = $d;
        }
        return $out;
    }

    /** @return list<array<string, mixed>> */
    public function messages(int $count = 0, float $timeout = 10.0): array
    {
        $raw = $count > 0 ? $this->receive($count, $timeout) : $this->drain();
        return array_map(static fn (string $p): array => json_decode($p, true, 512, JSON_THROW_ON_ERROR), $raw);
    }

    public function close(): void
    {
        if ($this->socket !== null) {
            socket_close($this->socket);
            $this->socket = null;
            if (file_exists($this->path)) {
                unlink($this->path);
            }
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    private function receiveOne(): ?string
    {
        $buf = '';
        $from = '';
        $n = @socket_recvfrom($this->socket, $buf, 70000, MSG_DONTWAIT, $from);
        return $n === false ? null : $buf;
    }
}
