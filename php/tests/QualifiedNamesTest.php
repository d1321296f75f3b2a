<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use PHPUnit\Framework\TestCase;

/**
 * src/ names PHP's functions and constants fully qualified (bin/qualify-names.php):
 * resolved at compile time instead of on the first use in every request.
 */
final class QualifiedNamesTest extends TestCase
{
    public function testEveryPhpFunctionAndConstantInSrcIsQualified(): void
    {
        $php = escapeshellarg(PHP_BINARY);
        $script = escapeshellarg(dirname(__DIR__) . '/bin/qualify-names.php');
        exec("$php $script --check 2>&1", $out, $status);
        self::assertSame(0, $status, implode("\n", $out));
    }

    public function testTheToolFindsAnUnqualifiedCall(): void
    {
        // The check itself can fail: on a copy of a file with one name left unqualified.
        $dir = sys_get_temp_dir() . '/bitville-qualify-' . bin2hex(random_bytes(4));
        mkdir("$dir/bin", 0o700, true);
        mkdir("$dir/src", 0o700, true);
        copy(dirname(__DIR__) . '/bin/qualify-names.php', "$dir/bin/qualify-names.php");
        file_put_contents("$dir/src/X.php", "<?php\nnamespace Bitville\\Apm;\nfunction f(string \$s): int { return strlen(\$s) + \\PHP_INT_SIZE; }\n");
        try {
            exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg("$dir/bin/qualify-names.php") . ' --check 2>&1', $out, $status);
            self::assertSame(1, $status);
            self::assertStringContainsString('X.php (1)', implode("\n", $out));
            exec(escapeshellarg(PHP_BINARY) . ' ' . escapeshellarg("$dir/bin/qualify-names.php") . ' 2>&1', $out2, $status2);
            self::assertSame(0, $status2);
            self::assertStringContainsString('return \\strlen($s) + \\PHP_INT_SIZE;', (string) file_get_contents("$dir/src/X.php"));
        } finally {
            @unlink("$dir/src/X.php");
            @unlink("$dir/bin/qualify-names.php");
            @rmdir("$dir/src");
            @rmdir("$dir/bin");
            @rmdir($dir);
        }
    }
}
