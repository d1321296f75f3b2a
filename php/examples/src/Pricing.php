<?php

declare(strict_types=1);

namespace App;

/**
 * Price simulation for the pricing report: deliberately CPU-bound in plain
 * PHP (no built-in function does the work), so a sampling profiler
 * attributes the time to recalculate() itself.
 */
final class Pricing
{
    /**
     * Simulates $rounds days of tiered discounts and currency rounding for
     * every product and returns the final price in cents per SKU.
     *
     * @param list<array{sku: string, price_cents: int}> $products
     * @return array<string, int>
     */
    public static function recalculate(array $products, int $rounds): array
    {
        $result = [];
        foreach ($products as $product) {
            $price = $product['price_cents'];
            $seed = 0;
            $sku = $product['sku'];
            for ($i = 0, $n = strlen($sku); $i < $n; $i++) {
                $seed = ($seed * 31 + ord($sku[$i])) % 1000003;
            }
            for ($day = 0; $day < $rounds; $day++) {
                $seed = ($seed * 1103515245 + 12345) % 2147483648;
                $tier = $seed % 7;
                if ($tier === 0) {
                    $price = intdiv($price * 95, 100);
                } elseif ($tier === 1) {
                    $price = intdiv($price * 103, 100);
                } else {
                    $price += ($seed % 3) - 1;
                }
                if ($price < 100) {
                    $price = 100;
                } elseif ($price > 1_000_000) {
                    $price = 1_000_000;
                }
            }
            $result[$sku] = $price;
        }
        return $result;
    }
}
