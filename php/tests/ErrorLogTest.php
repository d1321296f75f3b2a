<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\ErrorLog;
use PHPUnit\Framework\TestCase;

final class ErrorLogTest extends TestCase
{
    private string $log;
    private string|false $previous;

    protected function setUp(): void
    {
        $this->log = (string) tempnam(sys_get_temp_dir(), 'bitville-apm-log-');
        $this->previous = ini_set('error_log', $this->log);
    }

    protected function tearDown(): void
    {
        ini_set('error_log', (string) $this->previous);
        unlink($this->log);
    }

    /** @return list<string> */
    private function lines(): array
    {
        return array_values(array_filter(explode("\n", (string) file_get_contents($this->log))));
    }

    public function testCliLogsEveryRun(): void
    {
        ErrorLog::configError('sample_rate "x" must be a number', 'cli');
        ErrorLog::configError('sample_rate "x" must be a number', 'cli');
        self::assertCount(2, $this->lines());
        self::assertStringContainsString('bitville-apm: agent disabled: invalid configuration: sample_rate "x" must be a number', $this->lines()[0]);
    }

    public function testFpmLogsOncePerMinute(): void
    {
        $message = 'project "a b" is invalid ' . bin2hex(random_bytes(4));
        $marker = ErrorLog::markerPath('bitville-apm: agent disabled: invalid configuration: ' . $message);
        try {
            ErrorLog::configError($message, 'fpm-fcgi');
            ErrorLog::configError($message, 'fpm-fcgi');
            ErrorLog::configError($message . " and\nmore", 'fpm-fcgi');
            self::assertCount(2, $this->lines(), 'the second identical line is throttled; another message is not');
            self::assertFileExists($marker);
            touch($marker, time() - ErrorLog::THROTTLE_SECONDS - 1);
            ErrorLog::configError($message, 'fpm-fcgi');
            self::assertCount(3, $this->lines(), 'logged again after a minute');
            self::assertStringEndsWith('and more', $this->lines()[1], 'one line, newlines flattened');
        } finally {
            foreach ([$marker, ErrorLog::markerPath('bitville-apm: agent disabled: invalid configuration: ' . $message . ' and more')] as $m) {
                if (is_file($m)) {
                    unlink($m);
                }
            }
        }
    }
}
