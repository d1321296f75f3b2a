<?php

declare(strict_types=1);

// A minimal PSR-4 autoloader for running the profiler tests on their own:
//   phpunit --bootstrap php/tests/Profiler/autoload.php php/tests/Profiler
// php/tests/bootstrap.php does the same for the whole suite; both may load.
spl_autoload_register(static function (string $class): void {
    $prefixes = [
        'Bitville\\Apm\\Tests\\' => __DIR__ . '/../',
        'Bitville\\Apm\\' => __DIR__ . '/../../src/',
    ];
    foreach ($prefixes as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, \strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
            return;
        }
    }
});

require_once __DIR__ . '/Fixture/workload.php';
