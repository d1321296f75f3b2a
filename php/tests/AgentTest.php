<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Agent;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

final class AgentTest extends TestCase
{
    /**
     * Agent::boot() runs once per process, so this runs in its own. PHPUnit
     * turns warnings into exceptions, so the warning of a $_SERVER value
     * the agent does not expect becomes an exception inside boot(): it must
     * not leave boot(), and the agent logs one line and stays off.
     *
     * @runInSeparateProcess
     * @preserveGlobalState disabled
     */
    public function testBootNeverThrows(): void
    {
        $dir = TempDir::create();
        $log = $dir . '/error.log';
        $previous = ini_set('error_log', $log);
        try {
            touch($dir . '/agent.sock');
            $_SERVER['BITVILLE_APM_ENABLED'] = '1';
            $_SERVER['BITVILLE_APM_PROJECT'] = 'shop';
            $_SERVER['BITVILLE_APM_SOCKET'] = $dir . '/agent.sock';
            $_SERVER['BITVILLE_APM_SPOOL_DIR'] = 'off';
            $_SERVER['REQUEST_TIME_FLOAT'] = microtime(true);
            $_SERVER['argv'] = [['not a string']];
            $_SERVER['SCRIPT_NAME'] = ['not a string either'];

            Agent::boot();

            self::assertNull(Agent::current(), 'the agent is off');
            $lines = array_values(array_filter(explode("\n", (string) @file_get_contents($log))));
            self::assertCount(1, $lines);
            self::assertStringContainsString('bitville-apm: agent disabled: internal error: ', $lines[0]);
            Agent::boot();
            self::assertCount(1, array_filter(explode("\n", (string) file_get_contents($log))), 'boot runs once');
        } finally {
            ini_set('error_log', (string) $previous);
            TempDir::remove($dir);
        }
    }
}
