<?php

declare(strict_types=1);

namespace Bitville\Apm\Transport;

/**
 * Where datagram payloads go: the one seam between the agent and the
 * outside world, so that tests observe exactly what is sent.
 *
 * Implementations never throw, never print, never raise PHP errors that the
 * application could see, and never wait: a payload that cannot be handed over
 * at once (daemon gone, socket buffer full) is refused with false.
 */
interface Transport
{
    /** Hands one payload (one datagram) over; false when it could not be sent now. */
    public function send(string $payload): bool;
}
