<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Config;
use PHPUnit\Framework\TestCase;

/**
 * testdata/protocol/limits.json holds the protocol's limits once for
 * machines; the daemon's tests check it against the Go constants and
 * docs/protocol.md, these against the PHP constants that mirror them.
 */
final class LimitsTest extends TestCase
{
    /** Each key of limits.json with the PHP constants that hold it. */
    private const MIRRORS = [
        'max_datagram_bytes' => ['Bitville\Apm\Encoder::MAX_BYTES'],
        'max_project_bytes' => ['Bitville\Apm\Config::MAX_PROJECT_BYTES'],
        'max_host_bytes' => ['Bitville\Apm\Config::MAX_HOST_BYTES'],
        'max_pool_bytes' => ['Bitville\Apm\Config::MAX_POOL_BYTES'],
        'max_method_bytes' => ['Bitville\Apm\Endpoint::MAX_METHOD_BYTES'],
        'max_cid_bytes' => ['Bitville\Apm\Messages::MAX_CID'],
        'max_uri_bytes' => ['Bitville\Apm\Messages::MAX_URI'],
        'max_endpoint_bytes' => ['Bitville\Apm\Endpoint::MAX_BYTES'],
        'max_sql_statements' => ['Bitville\Apm\Config::MAX_SQL_STATEMENTS'],
        'max_sql_bytes' => ['Bitville\Apm\Config::MAX_SQL_LENGTH'],
        'max_function_bytes' => ['Bitville\Apm\Messages::MAX_FUNCTION', 'Bitville\Apm\Profiler\Frames::MAX_NAME_BYTES'],
        'max_functions' => ['Bitville\Apm\Messages::MAX_FUNCTIONS', 'Bitville\Apm\Profiler\Frames::MAX_FUNCTIONS'],
        'max_stacks' => ['Bitville\Apm\Messages::MAX_STACKS', 'Bitville\Apm\Profiler\Frames::MAX_STACKS'],
        'max_wall' => ['Bitville\Apm\Messages::MAX_WALL'],
        'max_stack_bytes' => ['Bitville\Apm\Messages::MAX_STACK', 'Bitville\Apm\Profiler\Frames::MAX_STACK_BYTES'],
        'max_stack_frames' => ['Bitville\Apm\Messages::MAX_FRAMES', 'Bitville\Apm\Profiler\Frames::MAX_PROGRESS_FRAMES'],
        'max_errors' => ['Bitville\Apm\RequestRecord::MAX_ERRORS'],
        'max_error_type_bytes' => ['Bitville\Apm\Messages::MAX_ERROR_TYPE'],
        'max_error_msg_bytes' => ['Bitville\Apm\Messages::MAX_ERROR_MSG'],
        'max_error_file_bytes' => ['Bitville\Apm\Messages::MAX_ERROR_FILE'],
        'max_profiler_bytes' => ['Bitville\Apm\Messages::MAX_PROFILER'],
        'max_truncated' => ['Bitville\Apm\Encoder::MAX_TRUNCATED'],
        'max_count' => ['Bitville\Apm\Messages::MAX_COUNT'],
        'max_period_seconds' => ['Bitville\Apm\Profiler\ProfilerFactory::MAX_PERIOD'],
        'max_exit_code' => ['Bitville\Apm\Messages::MAX_EXIT'],
        'max_sites' => ['Bitville\Apm\Messages::MAX_SITES'],
        'max_site_frames' => ['Bitville\Apm\Messages::MAX_SITE_FRAMES'],
        'max_site_frame_bytes' => ['Bitville\Apm\Messages::MAX_SITE_FRAME'],
    ];

    /** @return array<string, mixed> */
    private static function limits(): array
    {
        $path = dirname(__DIR__, 2) . '/testdata/protocol/limits.json';
        return json_decode((string) file_get_contents($path), true, 16, JSON_THROW_ON_ERROR);
    }

    public function testEveryLimitHasItsPhpConstants(): void
    {
        $limits = self::limits();
        unset($limits['spool'], $limits['traces']);
        self::assertSame([], array_diff(array_keys($limits), array_keys(self::MIRRORS)), 'limits.json keys no PHP constant mirrors');
        self::assertSame([], array_diff(array_keys(self::MIRRORS), array_keys($limits)), 'keys missing from limits.json');
        foreach (self::MIRRORS as $key => $constants) {
            foreach ($constants as $constant) {
                // as numbers: the period is 60 in JSON and 60.0 in PHP
                self::assertSame((float) $limits[$key], (float) constant($constant), "$constant mirrors $key");
            }
        }
    }

    /** The agent's slow_threshold_ms defaults to the daemon's --events.slow-threshold (its tests read the same file). */
    public function testSlowThresholdDefault(): void
    {
        $ms = self::limits()['traces']['slow_threshold_ms'];
        self::assertSame($ms, Config::DEFAULT_SLOW_THRESHOLD_MS);
        self::assertSame($ms, Config::fromValues(['enabled' => '1', 'project' => 'p', 'socket' => '/s.sock'])->slowThresholdMs);
    }

    public function testSpoolDefaults(): void
    {
        $spool = self::limits()['spool'];
        self::assertSame($spool['max_bytes'], Config::DEFAULT_SPOOL_MAX_BYTES);
        self::assertSame((string) $spool['max_bytes'], Config::DEFAULTS['spool_max_bytes']);
        self::assertSame($spool['max_bytes'], Config::fromValues(['enabled' => '1', 'project' => 'p', 'socket' => '/s.sock'])->spoolMaxBytes);
        self::assertNotEmpty($spool['derived_dir']);
        foreach ($spool['derived_dir'] as ['socket' => $socket, 'dir' => $dir]) {
            self::assertSame($dir, Config::derivedSpoolDir($socket), $socket);
            self::assertSame($dir, Config::fromValues(['enabled' => '1', 'project' => 'p', 'socket' => $socket])->spoolDirectory(), $socket);
        }
    }
}
