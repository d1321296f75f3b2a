<?php

declare(strict_types=1);

namespace App;

/**
 * The client of a partner's shipping-quote service: a line-based TCP
 * protocol, one connection per quote. It sends "QUOTE <sku>" and reads
 * "OK <cents>"; the worker waits in the read until the partner answers.
 */
final class PartnerClient
{
    public function __construct(private readonly string $address, private readonly float $timeoutSeconds = 5.0)
    {
    }

    /** Returns the shipping price of one product in cents. */
    public function quote(string $sku): int
    {
        $conn = stream_socket_client('tcp://' . $this->address, $errno, $error, $this->timeoutSeconds);
        if ($conn === false) {
            throw new \RuntimeException("cannot reach the partner at {$this->address}: {$error} ({$errno})");
        }
        try {
            stream_set_timeout($conn, (int) ceil($this->timeoutSeconds));
            fwrite($conn, "QUOTE {$sku}\n");
            $line = fgets($conn, 256);
            if ($line === false || preg_match('/^OK (\d+)$/', rtrim($line), $m) !== 1) {
                throw new \RuntimeException("the partner at {$this->address} gave no quote");
            }
            return (int) $m[1];
        } finally {
            fclose($conn);
        }
    }
}
