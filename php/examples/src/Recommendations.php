<?php

declare(strict_types=1);

namespace App;

/**
 * "Customers like you also bought": scores every product for one customer
 * against what the customer bought before. Deliberately CPU-bound in plain
 * PHP (no built-in function does the work), so a sampling profiler
 * attributes the time to score() itself. Product pages score one customer;
 * bin/rebuild-recommendations.php scores them all.
 */
final class Recommendations
{
    /** Length of the feature vector each product is compared by. */
    private const FEATURES = 32;

    /**
     * Returns the $limit best products the customer has not bought yet,
     * as product id => score, best first.
     *
     * @param array<int, int> $history product id => quantity the customer bought
     * @param array<int, int> $prices product id => price in cents, every product
     * @return array<int, float>
     */
    public static function score(array $history, array $prices, int $limit): array
    {
        $scores = [];
        foreach ($prices as $id => $price) {
            if (isset($history[$id])) {
                continue;
            }
            $score = 0.0;
            foreach ($history as $boughtId => $qty) {
                $boughtPrice = $prices[$boughtId] ?? $price;
                $dot = 0.0;
                for ($f = 0; $f < self::FEATURES; $f++) {
                    $a = (($boughtId * 2654435761 + $f * 40503) % 1000) / 1000.0;
                    $b = (($id * 2654435761 + $f * 40503) % 1000) / 1000.0;
                    $dot += $a * $b;
                }
                $gap = $price > $boughtPrice ? $price - $boughtPrice : $boughtPrice - $price;
                $score += $qty * $dot / (1.0 + $gap / 1000.0);
            }
            $scores[$id] = $score;
        }
        arsort($scores);
        return array_slice($scores, 0, $limit, true);
    }

    /**
     * What each customer bought: customer id => (product id => quantity),
     * for one customer or, with null, for all.
     *
     * @return array<int, array<int, int>>
     */
    public static function histories(\PDO $db, ?int $customerId = null): array
    {
        $sql = 'SELECT o.customer_id, i.product_id, sum(i.qty) AS qty FROM orders o JOIN order_items i ON i.order_id = o.id';
        $args = [];
        if ($customerId !== null) {
            $sql .= ' WHERE o.customer_id = ?';
            $args[] = $customerId;
        }
        $stmt = $db->prepare($sql . ' GROUP BY o.customer_id, i.product_id ORDER BY o.customer_id, i.product_id');
        $stmt->execute($args);
        $histories = [];
        foreach ($stmt->fetchAll() as $row) {
            $histories[(int) $row['customer_id']][(int) $row['product_id']] = (int) $row['qty'];
        }
        return $histories;
    }

    /** @return array<int, int> product id => price in cents */
    public static function prices(\PDO $db): array
    {
        $prices = [];
        foreach ($db->query('SELECT id, price_cents FROM products ORDER BY id')->fetchAll() as $row) {
            $prices[(int) $row['id']] = (int) $row['price_cents'];
        }
        return $prices;
    }
}
