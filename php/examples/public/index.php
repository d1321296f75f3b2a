<?php

declare(strict_types=1);

// Front controller of the example shop: nginx sends every request here.

require __DIR__ . '/../src/autoload.php';

use App\Controller\CartController;
use App\Controller\ExportController;
use App\Controller\HealthController;
use App\Controller\OrderController;
use App\Controller\PartnerController;
use App\Controller\PaymentController;
use App\Controller\QuoteController;
use App\Controller\RecommendationController;
use App\Controller\ReportController;
use App\Response;
use App\Router;

$router = new Router();
$router->add('GET', '/cheap', static fn (): Response => HealthController::cheap());
$router->add('GET', '/work/{ms}', static fn (array $p): Response => HealthController::work($p));
$router->add('GET', '/orders/{id}', static fn (array $p): Response => OrderController::show($p));
$router->add('POST', '/orders/{id}/pay', static fn (array $p): Response => PaymentController::pay($p));
$router->add('GET', '/quote/{id}', static fn (array $p): Response => QuoteController::show($p));
$router->add('GET', '/report', static fn (): Response => ReportController::pricing());
$router->add('GET', '/slow-sql', static fn (): Response => ReportController::slowQuery());
$router->add('GET', '/stuck', static fn (): Response => ExportController::export());
$router->add('GET', '/recommendations/{id}', static fn (array $p): Response => RecommendationController::show($p));
$router->add('GET', '/cart', static fn (): Response => CartController::show());
$router->add('GET', '/partner/quote', static fn (): Response => PartnerController::quote());

try {
    $response = $router->dispatch((string) ($_SERVER['REQUEST_METHOD'] ?? 'GET'), (string) ($_SERVER['REQUEST_URI'] ?? '/'));
} catch (\Throwable $e) {
    error_log('example shop: ' . get_class($e) . ': ' . $e->getMessage());
    $response = Response::json(500, ['error' => 'internal error']);
}
$response->send();
