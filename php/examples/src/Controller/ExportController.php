<?php

declare(strict_types=1);

namespace App\Controller;

use App\Locks;
use App\Response;

final class ExportController
{
    /**
     * The stuck endpoint: waits two minutes for a lock nobody releases, far
     * longer than the pool's request_terminate_timeout, so php-fpm kills
     * the worker and the request never finishes.
     */
    public static function export(): Response
    {
        if (!Locks::waitForLock('orders-export', 120.0)) {
            return Response::json(503, ['error' => 'export lock busy']);
        }
        return Response::json(200, ['status' => 'exported']);
    }
}
