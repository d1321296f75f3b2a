<?php

declare(strict_types=1);

/*
 * Optional opcache preloading of the agent's classes (php.ini):
 *
 *   opcache.preload = /path/to/php/preload.php
 *   opcache.preload_user = www-data   ; needed when php-fpm starts as root
 *
 * The classes then exist in every worker from the start and cost nothing
 * to load per request. bootstrap.php is still the auto_prepend_file that
 * starts the agent. After upgrading the agent, restart php-fpm: preloaded
 * code is only read at startup.
 */

spl_autoload_register(static function (string $class): void {
    if (strncmp($class, 'Bitville\\Apm\\', 13) === 0) {
        $file = __DIR__ . '/src/' . strtr(substr($class, 13), '\\', '/') . '.php';
        if (is_file($file)) {
            require_once $file;
        }
    }
});

$it = new RecursiveIteratorIterator(new RecursiveDirectoryIterator(__DIR__ . '/src', FilesystemIterator::SKIP_DOTS));
$files = [];
foreach ($it as $f) {
    if (str_ends_with($f->getFilename(), '.php')) {
        $files[] = $f->getPathname();
    }
}
sort($files);
foreach ($files as $file) {
    $class = 'Bitville\\Apm\\' . strtr(substr($file, strlen(__DIR__ . '/src/'), -4), '/', '\\');
    if (!class_exists($class) && !interface_exists($class)) {
        require_once $file;
    }
}
