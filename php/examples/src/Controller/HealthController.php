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
}
