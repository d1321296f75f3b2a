<?php

declare(strict_types=1);

namespace App\Controller;

use App\Db;
use App\Env;
use App\Pricing;
use App\Response;

/**
 * The "typical" endpoint the overhead benchmark measures: a handful of
 * statements (order, customer, items, tax rate) and some pricing work in
 * PHP, about 10 ms in all on the reference machine. Read-only, so rounds of
 * a benchmark do not change each other's data.
 */
final class QuoteController
{
    /** @param array<string, string> $params */
    public static function show(array $params): Response
    {
        $db = Db::connection();
        $stmt = $db->prepare('SELECT o.id, o.customer_id FROM orders o WHERE o.id = ?');
        $stmt->execute([(int) $params['id']]);
        $order = $stmt->fetch();
        if ($order === false) {
            return Response::json(404, ['error' => 'order not found']);
        }
        $stmt = $db->prepare('SELECT c.country FROM customers c WHERE c.id = ?');
        $stmt->execute([$order['customer_id']]);
        $country = (string) $stmt->fetchColumn();

        $stmt = $db->prepare(
            'SELECT p.sku, i.price_cents FROM order_items i JOIN products p ON p.id = i.product_id WHERE i.order_id = ? ORDER BY i.id'
        );
        $stmt->execute([(int) $order['id']]);
        $items = array_map(
            static fn (array $r): array => ['sku' => (string) $r['sku'], 'price_cents' => (int) $r['price_cents']],
            $stmt->fetchAll()
        );

        $stmt = $db->prepare('SELECT rate FROM tax_rates WHERE country = ?');
        $stmt->execute([$country]);
        $rate = (float) $stmt->fetchColumn();

        $prices = Pricing::recalculate($items, max(1, (int) Env::get('APP_QUOTE_ROUNDS', '4000')));
        $net = array_sum($prices);
        return Response::json(200, ['id' => (int) $order['id'], 'net_cents' => $net, 'tax_cents' => (int) round($net * $rate)]);
    }
}
