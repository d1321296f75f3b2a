<?php

declare(strict_types=1);

// Autoloading for the tests without Composer: Bitville\Apm\ from src/,
// Bitville\Apm\Tests\ from tests/.
spl_autoload_register(static function (string $class): void {
    foreach (['Bitville\\Apm\\Tests\\' => __DIR__ . '/', 'Bitville\\Apm\\' => __DIR__ . '/../src/'] as $prefix => $dir) {
        if (strncmp($class, $prefix, strlen($prefix)) === 0) {
            $file = $dir . strtr(substr($class, strlen($prefix)), '\\', '/') . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});

// The profiler tests' own fixtures (workload functions) load with their autoloader.
if (is_file(__DIR__ . '/Profiler/autoload.php')) {
    require_once __DIR__ . '/Profiler/autoload.php';
}
