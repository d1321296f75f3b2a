<?php

declare(strict_types=1);

namespace App\Controller;

use App\Env;
use App\PartnerClient;
use App\Response;

final class PartnerController
{
    /**
     * A shipping quote from the partner service at APP_PARTNER_ADDR
     * (host:port): the request waits as long as the partner takes.
     */
    public static function quote(): Response
    {
        $address = Env::get('APP_PARTNER_ADDR');
        if ($address === '') {
            return Response::json(503, ['error' => 'no partner configured']);
        }
        $cents = (new PartnerClient($address))->quote('SKU-00007');
        return Response::json(200, ['sku' => 'SKU-00007', 'shipping_cents' => $cents]);
    }
}
