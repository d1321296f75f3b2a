<?php

declare(strict_types=1);

namespace App\Controller;

use App\Db;
use App\Response;

/** The lock-prone endpoint: marks an order paid inside a transaction. */
final class PaymentController
{
    /** @param array<string, string> $params */
    public static function pay(array $params): Response
    {
        $db = Db::connection();
        $id = (int) $params['id'];
        $db->beginTransaction();
        try {
            // Waits behind any transaction holding the order's row (the
            // close-books job holds it while it runs).
            $stmt = $db->prepare('UPDATE orders SET status = ? WHERE id = ?');
            $stmt->execute(['paid', $id]);
            $updated = $stmt->rowCount();
            $db->commit();
        } catch (\Throwable $e) {
            $db->rollBack();
            throw $e;
        }
        if ($updated === 0) {
            return Response::json(404, ['error' => 'order not found']);
        }
        return Response::json(200, ['id' => $id, 'status' => 'paid']);
    }
}
