<?php

declare(strict_types=1);

namespace App\Controller;

use App\Response;

final class HealthController
{
    /** The cheap endpoint: no database, no work. */
    public static function cheap(): Response
    {
        return Response::json(200, ['status' => 'ok']);
    }

    /**
     * A small page: about $p['ms'] milliseconds of CPU (1 to 100), no
     * database. The kind of request PHP applications serve by the thousand
     * (autocompletes, lookups), where the agent's own cost shows most.
     *
     * @param array<string, string> $p
     */
    public static function work(array $p): Response
    {
        $ms = max(1, min(100, (int) ($p['ms'] ?? 1)));
        $until = hrtime(true) + $ms * 1_000_000;
        $x = 0;
        while (hrtime(true) < $until) {
            for ($i = 0; $i < 200; $i++) {
                $x = ($x * 31 + $i) % 1000003;
            }
        }
        return Response::json(200, ['status' => 'ok', 'ms' => $ms, 'x' => $x]);
    }
}
