<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

/** Temporary directories removed with everything in them. */
final class TempDir
{
    public static function create(string $prefix = 'bitville-apm-test-'): string
    {
        $dir = sys_get_temp_dir() . '/' . $prefix . bin2hex(random_bytes(6));
        if (!mkdir($dir, 0777, true)) {
            throw new \RuntimeException("cannot create $dir");
        }
        chmod($dir, 0777);
        return $dir;
    }

    public static function remove(string $dir): void
    {
        if (!is_dir($dir) || is_link($dir)) {
            if (file_exists($dir) || is_link($dir)) {
                unlink($dir);
            }
            return;
        }
        foreach (scandir($dir) ?: [] as $f) {
            if ($f !== '.' && $f !== '..') {
                self::remove($dir . '/' . $f);
            }
        }
        rmdir($dir);
    }
}
