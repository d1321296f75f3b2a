<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

use Bitville\Apm\Transport\Transport;

/** A Transport that keeps what it is given; it can be told to refuse or to throw. */
final class MemoryTransport implements Transport
{
    /** @var list<string> */
    public array $payloads = [];
    public bool $refuse = false;
    public bool $throw = false;
    public int $attempts = 0;

    public function send(string $payload): bool
    {
        $this->attempts++;
        if ($this->throw) {
            throw new \RuntimeException('transport exploded');
        }
        if ($this->refuse) {
            return false;
        }
        $this->payloads[] = $payload;
        return true;
    }

    /** @return list<array<string, mixed>> the payloads decoded */
    public function messages(): array
    {
        return array_map(static fn (string $p): array => json_decode($p, true, 512, JSON_THROW_ON_ERROR), $this->payloads);
    }

    /** @return array<string, mixed>|null the last message of a type */
    public function last(string $type): ?array
    {
        $found = null;
        foreach ($this->messages() as $m) {
            if ($m['type'] === $type) {
                $found = $m;
            }
        }
        return $found;
    }
}
