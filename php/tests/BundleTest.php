<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use PHPUnit\Framework\TestCase;

/**
 * bundle.php is generated from src/ by bin/build-bundle.php; bootstrap.php
 * loads it instead of autoloading the classes of every request one by one.
 */
final class BundleTest extends TestCase
{
    public function testTheCommittedBundleIsUpToDate(): void
    {
        $php = escapeshellarg(PHP_BINARY);
        $script = escapeshellarg(dirname(__DIR__) . '/bin/build-bundle.php');
        exec("$php $script --check 2>&1", $out, $status);
        self::assertSame(0, $status, "php/bundle.php differs from src/ (run php php/bin/build-bundle.php):\n" . implode("\n", $out));
    }

    public function testTheBundleDeclaresTheRequestClassesAndNothingRuns(): void
    {
        // In a fresh process without php.ini (so without ext-pdo, sockets,
        // excimer): the bundle alone declares the classes a request uses,
        // prints nothing and starts nothing.
        $bundle = var_export(dirname(__DIR__) . '/bundle.php', true);
        $code = <<<PHP
            \$before = get_declared_classes();
            require $bundle;
            \$new = array_values(array_diff(array_merge(get_declared_classes(), get_declared_interfaces()), \$before));
            sort(\$new);
            echo json_encode([\$new, \Bitville\Apm\Agent::current() === null]);
            PHP;
        $out = shell_exec(escapeshellarg(PHP_BINARY) . ' -n -r ' . escapeshellarg($code) . ' 2>&1');
        $got = json_decode((string) $out, true);
        self::assertIsArray($got, "unexpected output: $out");
        [$classes, $idle] = $got;
        foreach (['Bitville\Apm\Agent', 'Bitville\Apm\Config', 'Bitville\Apm\Runtime', 'Bitville\Apm\Messages', 'Bitville\Apm\Encoder',
            'Bitville\Apm\Transport\Channel', 'Bitville\Apm\Transport\UnixDatagramTransport', 'Bitville\Apm\Profiler\SamplingProfiler', 'Bitville\Apm\Profiler\ProgressTimer'] as $c) {
            self::assertContains($c, $classes);
        }
        self::assertNotContains('Bitville\Apm\Pdo\TracedPdo', $classes, 'TracedPdo extends PDO, which may be missing');
        self::assertTrue($idle, 'requiring the bundle must not start the agent');
    }
}
