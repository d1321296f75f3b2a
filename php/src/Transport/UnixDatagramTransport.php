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
 * It writes to a persistent connected udg:// stream: PHP keeps it open in
 * the php-fpm worker from one request to the next, so a request pays for
 * no socket(), connect() or fcntl() and the kernel resolves no path per
 * datagram (docs/performance.md, docs/decisions.md). When the daemon
 * restarted, the old connection is refused (ECONNREFUSED): the stream is
 * closed, connected again and the datagram sent once more. PHP warnings of failed sends are swallowed by a handler set
 * around the call, so the application's error handler and error_get_last()
 * never see them.
 */
final class UnixDatagramTransport implements Transport
{
    /** @var resource|null */
    private $socket = null;

    /** Why the last send failed: errno or a short text. */
    private string $lastError = '';

    /** The warning of the send under way, if it raised one. */
    private static string $warning = '';

    public function __construct(private readonly string $path)
    {
    }

    public function send(string $payload): bool
    {
        self::$warning = '';
        \set_error_handler([self::class, 'ignore']);
        try {
            // One method with its retry: this runs twice a request.
            for ($attempt = 0; ; $attempt++) {
                if (!\is_resource($this->socket)) {
                    $s = \stream_socket_client('udg://' . $this->path, $errno, $errstr, 0.001, \STREAM_CLIENT_CONNECT | \STREAM_CLIENT_PERSISTENT);
                    if ($s === false) {
                        $this->lastError = 'connect: ' . $errno . ' ' . $errstr;
                        return false;
                    }
                    // A stream kept from an earlier request is non-blocking already.
                    if (\stream_get_meta_data($s)['blocked']) {
                        \stream_set_blocking($s, false);
                    }
                    $this->socket = $s;
                }
                $n = \fwrite($this->socket, $payload);
                if ($n === \strlen($payload)) {
                    return true;
                }
                if ($n === 0 && self::$warning === '') {
                    // PHP reports a full queue (EAGAIN) on a non-blocking stream
                    // as nothing written, without a warning: the connection is fine.
                    $this->lastError = 'EAGAIN: the daemon\'s queue is full';
                    return false;
                }
                $this->lastError = self::$warning !== '' ? self::$warning : 'write failed';
                // The daemon is gone or restarted: connect again, once now.
                \fclose($this->socket);
                $this->socket = null;
                if ($attempt > 0) {
                    return false;
                }
            }
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
        if (\is_resource($this->socket)) {
            \fclose($this->socket);
        }
        $this->socket = null;
    }

    /**
     * The error handler around a send: its warnings are expected, and the
     * failure is counted as a drop. (No destructor: PHP closes the socket
     * when the object goes, without a warning.) @internal
     */
    public static function ignore(int $no = 0, string $message = ''): bool
    {
        self::$warning = $message;
        return true;
    }
}
