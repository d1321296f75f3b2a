<?php

declare(strict_types=1);

namespace App\Controller;

use App\Db;
use App\Env;
use App\Pricing;
use App\Response;

final class ReportController
{
    /** The CPU-heavy endpoint: a price simulation over every product. */
    public static function pricing(): Response
    {
        $products = Db::connection()->query('SELECT sku, price_cents FROM products ORDER BY id')->fetchAll();
        $list = array_map(static fn (array $p): array => ['sku' => (string) $p['sku'], 'price_cents' => (int) $p['price_cents']], $products);
        $prices = Pricing::recalculate($list, self::rounds());
        return Response::json(200, [
            'products' => count($prices),
            'sum_cents' => array_sum($prices),
            'min_cents' => min($prices),
            'max_cents' => max($prices),
        ]);
    }

    /** The slow-query endpoint: a report whose query waits in the database. */
    public static function slowQuery(): Response
    {
        $seconds = (float) Env::get('APP_SLOW_SQL_SECONDS', '1.5');
        $stmt = Db::connection()->prepare('SELECT count(*) AS orders FROM orders, pg_sleep(?)');
        $stmt->execute([$seconds]);
        return Response::json(200, ['orders' => (int) $stmt->fetchColumn()]);
    }

    private static function rounds(): int
    {
        $rounds = (int) Env::get('APP_PRICING_ROUNDS', '30000');
        return max(1, $rounds);
    }
}
