<?php

declare(strict_types=1);

namespace App\Controller;

use App\Db;
use App\Recommendations;
use App\Response;

final class RecommendationController
{
    /**
     * "Customers like you also bought" for one customer: two queries and
     * about 10 ms of scoring in App\Recommendations::score, the function
     * bin/rebuild-recommendations.php runs for every customer.
     *
     * @param array<string, string> $params
     */
    public static function show(array $params): Response
    {
        $db = Db::connection();
        $id = (int) $params['id'];
        $history = Recommendations::histories($db, $id)[$id] ?? [];
        $best = Recommendations::score($history, Recommendations::prices($db), 5);
        $items = [];
        foreach ($best as $productId => $score) {
            $items[] = ['product_id' => $productId, 'score' => round($score, 3)];
        }
        return Response::json(200, ['customer_id' => $id, 'recommendations' => $items]);
    }
}
