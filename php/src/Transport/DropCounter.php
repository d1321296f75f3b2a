<?php

declare(strict_types=1);

namespace Bitville\Apm\Transport;

use Bitville\Apm\Messages;

/**
 * Messages this worker failed to send since its last successful send: the
 * count travels in the `dropped` field of the next message that gets through
 * (docs/protocol.md).
 *
 * PHP frees everything a request made when it ends, statics included, so
 * without shared memory the count lives for one request: a start dropped
 * while the daemon restarts is reported by the same request's end. With APCu
 * loaded and enabled (apc.enabled, and apc.enable_cli for CLI) the count is
 * kept per worker pid across requests in APCu.
 */
final class DropCounter
{
    private int $pending = 0;
    private readonly ?string $apcuKey;

    public function __construct(int $pid, ?bool $useApcu = null)
    {
        $useApcu ??= \function_exists('apcu_enabled') && apcu_enabled();
        $this->apcuKey = $useApcu ? 'bitville_apm_dropped_' . $pid : null;
        if ($this->apcuKey !== null) {
            $n = apcu_fetch($this->apcuKey, $ok);
            $this->pending = $ok && \is_int($n) && $n > 0 ? $n : 0;
        }
    }

    /** The count to report in the next message. */
    public function pending(): int
    {
        return $this->pending;
    }

    /** A message could not be sent. */
    public function failed(): void
    {
        $this->lost(1);
    }

    /** $n messages are lost (spooled ones deleted to make room for newer ones). */
    public function lost(int $n): void
    {
        if ($n <= 0) {
            return;
        }
        $this->pending = \min($this->pending + $n, Messages::MAX_COUNT);
        if ($this->apcuKey !== null) {
            apcu_store($this->apcuKey, $this->pending);
        }
    }

    /** A message carrying $reported (what pending() returned) got through. */
    public function delivered(int $reported): void
    {
        if ($reported === 0) {
            return;
        }
        $this->pending = \max(0, $this->pending - $reported);
        if ($this->apcuKey !== null) {
            apcu_store($this->apcuKey, $this->pending);
        }
    }
}
