<?php

declare(strict_types=1);

namespace App;

/**
 * The application's database connection. It uses the APM agent's traced
 * PDO when the agent is loaded (auto_prepend_file) and plain PDO otherwise:
 * the application runs the same with or without the agent.
 */
final class Db
{
    private static ?\PDO $pdo = null;

    public static function connection(): \PDO
    {
        if (self::$pdo === null) {
            $dsn = Env::get('APP_DB_DSN');
            if ($dsn === '') {
                throw new \RuntimeException('APP_DB_DSN is not set');
            }
            $user = Env::get('APP_DB_USER');
            $password = Env::get('APP_DB_PASSWORD');
            $options = [
                \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
                \PDO::ATTR_DEFAULT_FETCH_MODE => \PDO::FETCH_ASSOC,
            ];
            $class = class_exists(\Bitville\Apm\Pdo\TracedPdo::class) ? \Bitville\Apm\Pdo\TracedPdo::class : \PDO::class;
            self::$pdo = new $class($dsn, $user === '' ? null : $user, $password === '' ? null : $password, $options);
        }
        return self::$pdo;
    }
}
