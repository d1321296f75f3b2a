<?php

declare(strict_types=1);

namespace App;

/** Application settings from the environment (php-fpm env[...] or the shell). */
final class Env
{
    public static function get(string $name, string $default = ''): string
    {
        $value = $_SERVER[$name] ?? getenv($name);
        return is_string($value) && $value !== '' ? $value : $default;
    }
}
