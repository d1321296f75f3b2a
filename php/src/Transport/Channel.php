<?php

declare(strict_types=1);

namespace Bitville\Apm\Transport;

use Bitville\Apm\Encoder;

/**
 * Sends messages: fills in the `dropped` count, encodes (fitting the 64 KiB
 * limit), hands the payload to the transport, and on failure counts the drop
 * or, for end messages with a spool configured, writes the payload to the
 * spool. A spooled message is not lost, so it is not counted as dropped; the
 * count it carried travels with it and is not reported again.
 */
final class Channel
{
    /**
     * @param ?Encoder $encoder encodes every message; null: Encoder::payload(), which makes an Encoder only for the rare message that needs fitting or cleaning
     * @param Spool|(\Closure(): ?Spool)|null $spool a closure makes the spool (or finds there is none) on the first failed send
     */
    public function __construct(
        private readonly Transport $transport,
        private readonly DropCounter $drops,
        private readonly ?Encoder $encoder = null,
        private Spool|\Closure|null $spool = null,
    ) {
    }

    /** The count the next message will carry in `dropped`. */
    public function dropped(): int
    {
        return $this->drops->pending();
    }

    /**
     * Sends a message built with dropped() as its `dropped` count (passed
     * here as $reported). True when it was sent or spooled.
     *
     * @param array<string, mixed> $message
     */
    public function send(array $message, int $reported): bool
    {
        $payload = $this->encoder !== null ? $this->encoder->encode($message) : Encoder::payload($message);
        if ($payload === null) {
            $this->drops->failed();
            return false;
        }
        $ok = false;
        try {
            $ok = $this->transport->send($payload);
        } catch (\Throwable) {
            // a Transport must not throw; one that does is a failed send
        }
        if ($ok) {
            if ($reported > 0) {
                $this->drops->delivered($reported);
            }
            return true;
        }
        if ($this->spool instanceof \Closure) {
            $this->spool = ($this->spool)();
        }
        if ($this->spool !== null && ($message['type'] ?? '') === 'end' && $this->spool->write($payload)) {
            $this->drops->delivered($reported);
            return true;
        }
        $this->drops->failed();
        return false;
    }
}
