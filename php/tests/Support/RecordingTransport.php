<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

use Bitville\Apm\Transport\Transport;

/** A Transport that hands each payload to another one and keeps what that one answered. */
final class RecordingTransport implements Transport
{
    /** @var list<bool> */
    private array $results = [];

    public function __construct(private readonly Transport $inner)
    {
    }

    public function send(string $payload): bool
    {
        $ok = $this->inner->send($payload);
        $this->results[] = $ok;
        return $ok;
    }

    /** @return list<bool> the answer to each send, in order */
    public function results(): array
    {
        return $this->results;
    }
}
