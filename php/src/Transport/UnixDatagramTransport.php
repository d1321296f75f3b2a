<?php

declare(strict_types=1);

namespace Bitville\Apm\Transport;

/**
 * Sends each payload as one datagram to the daemon's unix SOCK_DGRAM socket,
 * non-blocking: when the daemon is gone (ENOENT, ECONNREFUSED), the path is
 * not a socket, or its receive queue is full (EAGAIN), send() returns false
 * at once and the caller counts the drop. It never waits: a full queue is
 * not retried.
 *
 * It uses ext-sockets (socket_sendto on an unconnected socket, so a daemon
 * restart between two sends is harmless) when loaded, which it is in
 * Debian's php8.2-cli and php8.2-fpm; else a udg:// stream, reconnected after
 * a failure. PHP warnings of failed sends are swallowed by a handler set
 * around the call, so the application's error handler and error_get_last()
 * never see them.
 */
final class UnixDatagramTransport implements Transport
{
    /** @var \Socket|resource|null */
    private $socket = null;
    private readonly bool $useSockets;

    /** Why the last send failed: errno or a short text. */
    private string $lastError = '';

    public function __construct(private readonly string $path, ?bool $useSockets = null)
    {
        $this->useSockets = $useSockets ?? \function_exists('socket_sendto');
    }

    public function send(string $payload): bool
    {
        \set_error_handler(static fn (): bool => true);
        try {
            return $this->useSockets ? $this->sendSocket($payload) : $this->sendStream($payload);
        } catch (\Throwable $e) {
            $this->lastError = $e->getMessage();
            return false;
        } finally {
            \restore_error_handler();
        }
    }

    /** Why the last send failed (errno or a short text), for diagnostics; empty before any failure. */
    public function lastError(): string
    {
        return $this->lastError;
    }

    public function close(): void
    {
        if ($this->socket instanceof \Socket) {
            \socket_close($this->socket);
        } elseif (\is_resource($this->socket)) {
            \fclose($this->socket);
        }
        $this->socket = null;
    }

    public function __destruct()
    {
        \set_error_handler(static fn (): bool => true);
        try {
            $this->close();
        } catch (\Throwable) {
        } finally {
            \restore_error_handler();
        }
    }

    private function sendSocket(string $payload): bool
    {
        if (!$this->socket instanceof \Socket) {
            $s = \socket_create(\AF_UNIX, \SOCK_DGRAM, 0);
            if ($s === false) {
                $this->lastError = 'socket_create: ' . \socket_strerror(\socket_last_error());
                return false;
            }
            \socket_set_nonblock($s);
            $this->socket = $s;
        }
        $len = \strlen($payload);
        $n = \socket_sendto($this->socket, $payload, $len, \MSG_DONTWAIT, $this->path);
        if ($n === $len) {
            return true;
        }
        $errno = \socket_last_error($this->socket);
        \socket_clear_error($this->socket);
        $this->lastError = 'errno ' . $errno . ': ' . \socket_strerror($errno);
        return false;
    }

    private function sendStream(string $payload): bool
    {
        if (!\is_resource($this->socket)) {
            $s = \stream_socket_client('udg://' . $this->path, $errno, $errstr, 0.001);
            if ($s === false) {
                $this->lastError = 'connect: ' . $errno . ' ' . $errstr;
                return false;
            }
            \stream_set_blocking($s, false);
            $this->socket = $s;
        }
        $n = \fwrite($this->socket, $payload);
        if ($n === \strlen($payload)) {
            return true;
        }
        $this->lastError = 'write failed';
        // the daemon may have restarted: connect again next time
        \fclose($this->socket);
        $this->socket = null;
        return false;
    }
}
