<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * Ends the request from a destructor when the end handler never ran: a
 * shutdown function of the application that calls exit() stops the ones
 * after it, the agent's among them, but PHP still destroys every object
 * afterwards. When the end was sent, this does nothing.
 */
final class ShutdownGuard
{
    public function __construct(private readonly Runtime $runtime)
    {
    }

    public function __destruct()
    {
        try {
            $this->runtime->finish(false);
        } catch (\Throwable) {
        }
    }
}
