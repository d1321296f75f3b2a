<?php

declare(strict_types=1);

namespace App\Controller;

use App\Env;
use App\Response;

final class CartController
{
    /**
     * The shopping cart, kept in the PHP session (files handler). The files
     * handler locks the session file from session_start() until the
     * session is written, so requests of one visitor run one at a time:
     * while one holds the session to refresh the cart (APP_CART_HOLD_MS,
     * standing for a stock or price lookup), the others wait in
     * session_start().
     */
    public static function show(): Response
    {
        session_start();
        $cart = $_SESSION['cart'] ?? ['items' => 0, 'refreshed' => 0];
        self::refresh();
        $cart['refreshed']++;
        $_SESSION['cart'] = $cart;
        session_write_close();
        return Response::json(200, ['items' => $cart['items']]);
    }

    private static function refresh(): void
    {
        usleep(1000 * max(0, (int) Env::get('APP_CART_HOLD_MS', '250')));
    }
}
