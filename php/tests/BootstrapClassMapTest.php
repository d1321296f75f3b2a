<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use PHPUnit\Framework\TestCase;

/**
 * bootstrap.php maps the agent's classes to files so that autoloading costs
 * no stat() per class and request; this keeps the map complete and correct.
 * Classes outside it (php/src/Profiler) load through the PSR-4 fallback.
 */
final class BootstrapClassMapTest extends TestCase
{
    /** @return array<string, string> class => file below src */
    private static function map(): array
    {
        $src = (string) file_get_contents(dirname(__DIR__) . '/bootstrap.php');
        preg_match_all("/^\\s*'(Bitville[^']+)' => '([^']+)',$/m", $src, $m, PREG_SET_ORDER);
        $map = [];
        foreach ($m as [, $class, $file]) {
            $map[str_replace('\\\\', '\\', $class)] = $file;
        }
        return $map;
    }

    public function testEveryAgentClassIsMapped(): void
    {
        $root = dirname(__DIR__) . '/src';
        $want = [];
        $it = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($root, \FilesystemIterator::SKIP_DOTS));
        foreach ($it as $f) {
            $rel = substr($f->getPathname(), strlen($root));
            if (str_starts_with($rel, '/Profiler/') || !str_ends_with($rel, '.php')) {
                continue;
            }
            $want['Bitville\\Apm\\' . str_replace('/', '\\', substr($rel, 1, -4))] = $rel;
        }
        ksort($want);
        $got = self::map();
        ksort($got);
        self::assertSame($want, $got);
    }

    public function testMappedFilesDeclareTheirClass(): void
    {
        foreach (self::map() as $class => $file) {
            $src = (string) file_get_contents(dirname(__DIR__) . '/src' . $file);
            $short = substr($class, strrpos($class, '\\') + 1);
            $ns = substr($class, 0, strrpos($class, '\\'));
            self::assertStringContainsString("namespace $ns;", $src, $file);
            self::assertMatchesRegularExpression('/^(final |abstract )?(class|interface) ' . $short . '\b/m', $src, $file);
        }
    }
}
