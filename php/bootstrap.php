<?php

declare(strict_types=1);

/*
 * The Bitville APM PHP agent, loaded before every script:
 *
 *   auto_prepend_file = /path/to/php/bootstrap.php
 *
 * It registers an autoloader for Bitville\Apm\ (and nothing else), reads the
 * configuration (php/README.md) and, when enabled, starts measuring the
 * request. Including it twice is harmless. Nothing here prints, throws or
 * changes the response.
 */

if (!defined('BITVILLE_APM_BOOTSTRAPPED')) {
    define('BITVILLE_APM_BOOTSTRAPPED', true);

    spl_autoload_register(static function (string $class): void {
        // The agent's own classes by a fixed map: no stat() per class on
        // every request (tests/BootstrapClassMapTest keeps it complete).
        $file = [
            'Bitville\\Apm\\Agent' => '/Agent.php',
            'Bitville\\Apm\\Config' => '/Config.php',
            'Bitville\\Apm\\ConfigException' => '/ConfigException.php',
            'Bitville\\Apm\\Encoder' => '/Encoder.php',
            'Bitville\\Apm\\Endpoint' => '/Endpoint.php',
            'Bitville\\Apm\\ErrorLog' => '/ErrorLog.php',
            'Bitville\\Apm\\Ids' => '/Ids.php',
            'Bitville\\Apm\\Messages' => '/Messages.php',
            'Bitville\\Apm\\Pdo\\TracedPdo' => '/Pdo/TracedPdo.php',
            'Bitville\\Apm\\Pdo\\TracedStatement' => '/Pdo/TracedStatement.php',
            'Bitville\\Apm\\Phalcon\\DbListener' => '/Phalcon/DbListener.php',
            'Bitville\\Apm\\Phalcon\\RouterListener' => '/Phalcon/RouterListener.php',
            'Bitville\\Apm\\Redactor' => '/Redactor.php',
            'Bitville\\Apm\\RequestRecord' => '/RequestRecord.php',
            'Bitville\\Apm\\Runtime' => '/Runtime.php',
            'Bitville\\Apm\\ShutdownGuard' => '/ShutdownGuard.php',
            'Bitville\\Apm\\SqlCommenter' => '/SqlCommenter.php',
            'Bitville\\Apm\\SqlSite' => '/SqlSite.php',
            'Bitville\\Apm\\SqlSpan' => '/SqlSpan.php',
            'Bitville\\Apm\\Text' => '/Text.php',
            'Bitville\\Apm\\Transport\\Channel' => '/Transport/Channel.php',
            'Bitville\\Apm\\Transport\\DropCounter' => '/Transport/DropCounter.php',
            'Bitville\\Apm\\Transport\\Spool' => '/Transport/Spool.php',
            'Bitville\\Apm\\Transport\\Transport' => '/Transport/Transport.php',
            'Bitville\\Apm\\Transport\\UnixDatagramTransport' => '/Transport/UnixDatagramTransport.php',
        ][$class] ?? null;
        if ($file !== null) {
            require __DIR__ . '/src' . $file;
            return;
        }
        if (strncmp($class, 'Bitville\\Apm\\', 13) !== 0) {
            return;
        }
        $file = __DIR__ . '/src/' . strtr(substr($class, 13), '\\', '/') . '.php';
        if (is_file($file)) {
            require $file;
        }
    });

    // The classes every request needs come in one file (bundle.php, built
    // from src/ by bin/build-bundle.php): one include instead of ~25. Not
    // when any agent class exists already (opcache.preload with
    // preload.php): declaring it twice would be fatal.
    if (!class_exists(\Bitville\Apm\Agent::class, false) && !class_exists(\Bitville\Apm\Runtime::class, false)
        && !interface_exists(\Bitville\Apm\Transport\Transport::class, false) && is_file(__DIR__ . '/bundle.php')) {
        require __DIR__ . '/bundle.php';
    }

    try {
        \Bitville\Apm\Agent::boot();
    } catch (\Throwable $e) {
        // The agent must never break the application.
    }
}
