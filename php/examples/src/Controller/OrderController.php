<?php

declare(strict_types=1);

namespace App\Controller;

use App\Db;
use App\Response;

/** The SQL-heavy endpoint: one order with its customer, items and tax. */
final class OrderController
{
    /** @param array<string, string> $params */
    public static function show(array $params): Response
    {
        $db = Db::connection();
        $id = (int) $params['id'];

        $stmt = $db->prepare('SELECT o.id, o.customer_id, o.status, o.created_at FROM orders o WHERE o.id = :id');
        $stmt->execute(['id' => $id]);
        $order = $stmt->fetch();
        if ($order === false) {
            return Response::json(404, ['error' => 'order not found']);
        }

        $stmt = $db->prepare('SELECT c.name, c.email, c.country FROM customers c WHERE c.id = ?');
        $stmt->execute([$order['customer_id']]);
        $customer = $stmt->fetch();

        $stmt = $db->prepare('SELECT i.product_id, i.qty, i.price_cents FROM order_items i WHERE i.order_id = ? ORDER BY i.id');
        $stmt->execute([$id]);
        $items = $stmt->fetchAll();

        // One query per item: the N+1 pattern an APM is there to show.
        $product = $db->prepare('SELECT p.sku, p.name FROM products p WHERE p.id = ?');
        $lines = [];
        $net = 0;
        foreach ($items as $item) {
            $product->execute([$item['product_id']]);
            $p = $product->fetch();
            $lineTotal = (int) $item['qty'] * (int) $item['price_cents'];
            $net += $lineTotal;
            $lines[] = ['sku' => $p['sku'], 'name' => $p['name'], 'qty' => (int) $item['qty'], 'total_cents' => $lineTotal];
        }

        $rate = $db->query("SELECT rate FROM tax_rates WHERE country = " . $db->quote((string) $customer['country']))->fetchColumn();
        $tax = (int) round($net * (float) $rate);

        $db->exec('UPDATE orders SET view_count = view_count + 1 WHERE id = ' . $id);

        return Response::json(200, [
            'id' => (int) $order['id'],
            'status' => $order['status'],
            'customer' => ['name' => $customer['name'], 'email' => $customer['email']],
            'items' => $lines,
            'net_cents' => $net,
            'tax_cents' => $tax,
            'total_cents' => $net + $tax,
        ]);
    }
}
