<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests;

use Bitville\Apm\Config;
use Bitville\Apm\ConfigException;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

final class ConfigTest extends TestCase
{
    private string $dir;

    protected function setUp(): void
    {
        $this->dir = TempDir::create();
    }

    protected function tearDown(): void
    {
        TempDir::remove($this->dir);
    }

    public function testConstructorDefaultsAreTheParsedDefaults(): void
    {
        // fromValues() parses only the keys it is given and leaves the rest
        // to the constructor's defaults: both must agree.
        $minimal = ['enabled' => '1', 'project' => 'shop', 'socket' => '/run/x.sock'];
        $all = $minimal + Config::DEFAULTS;
        self::assertEquals(Config::fromValues($all), Config::fromValues($minimal));
    }

    public function testDisabledByDefault(): void
    {
        $c = Config::fromValues([]);
        self::assertFalse($c->enabled);
        self::assertFalse(Config::fromValues(['enabled' => '0', 'project' => 'x', 'socket' => '/s'])->enabled);
    }

    public function testDisabledConfigIgnoresTheOtherKeys(): void
    {
        self::assertFalse(Config::fromValues(['enabled' => 'off', 'sample_rate' => 'not a number'])->enabled);
    }

    public function testMinimalEnvironmentIsComplete(): void
    {
        $c = Config::load([
            'BITVILLE_APM_CONFIG' => '',
            'BITVILLE_APM_ENABLED' => '1',
            'BITVILLE_APM_SOCKET' => '/run/x.sock',
            'BITVILLE_APM_PROJECT' => 'shop',
        ]);
        self::assertTrue($c->enabled);
        self::assertSame('shop', $c->project);
        self::assertSame('/run/x.sock', $c->socket);
        // the documented defaults
        self::assertSame('excimer', $c->profiler);
        self::assertSame(0.0, $c->sampleRate);
        self::assertSame(1000, $c->slowThresholdMs);
        self::assertSame(100.0, $c->excimerPeriodMs);
        self::assertSame(5000, $c->progressAfterMs);
        self::assertSame(5000, $c->progressIntervalMs);
        self::assertSame('', $c->forceHeaderSecret);
        self::assertFalse($c->echoCorrelationHeader);
        self::assertTrue($c->sqlcommenter);
        self::assertFalse($c->sqlcommenterCorrelation);
        self::assertSame(2048, $c->sqlMaxLength);
        self::assertSame(500, $c->sqlMaxStatements);
        self::assertSame([], $c->endpointRules);
        self::assertSame([], $c->redactKeys);
        self::assertSame([], $c->redactPatterns);
        self::assertSame('', $c->spoolDir);
        self::assertSame('/run/x.spool', $c->spoolDirectory(), 'derived from the socket');
        self::assertFalse($c->spoolDirIsExplicit());
        self::assertSame(67108864, $c->spoolMaxBytes);
        self::assertSame('', $c->host);
        self::assertSame('', $c->pool);
        self::assertTrue($c->finishRequest);
    }

    public function testFileWithEnvironmentOverrides(): void
    {
        $ini = $this->dir . '/agent.ini';
        file_put_contents($ini, <<<'INI'
            ; Bitville APM
            enabled = 1
            project = shop
            socket = "/run/bitville-apm/agent.sock"
            profiler = tideways
            sample_rate = 0.25
            slow_threshold_ms = 250
            excimer_period_ms = 2.5
            force_header_secret = "s3cr3t"
            echo_correlation_header = on
            sqlcommenter = off
            sql_max_length = 4096
            sql_max_statements = 100
            endpoint_rules[] = "#^/shop/[^/]+/cart$# => /shop/{slug}/cart"
            endpoint_rules[] = #^/u/[a-z]+$# => /u/{name}
            redact_keys = Pin, otp
            redact_patterns[] = "/ACME-\d{6}/"
            spool_dir = /var/spool/bitville-apm
            spool_max_bytes = 1048576
            host = web-1
            pool = www
            INI);
        $c = Config::load([
            'BITVILLE_APM_CONFIG' => $ini,
            'BITVILLE_APM_PROJECT' => 'shop-eu',
            'BITVILLE_APM_SAMPLE_RATE' => '1',
        ]);
        self::assertSame($ini, $c->source);
        self::assertSame('shop-eu', $c->project, 'env overrides the file');
        self::assertSame(1.0, $c->sampleRate);
        self::assertSame('tideways', $c->profiler);
        self::assertSame(250, $c->slowThresholdMs);
        self::assertSame(2.5, $c->excimerPeriodMs);
        self::assertSame('s3cr3t', $c->forceHeaderSecret);
        self::assertTrue($c->echoCorrelationHeader);
        self::assertFalse($c->sqlcommenter);
        self::assertSame(4096, $c->sqlMaxLength);
        self::assertSame(100, $c->sqlMaxStatements);
        self::assertSame([['#^/shop/[^/]+/cart$#', '/shop/{slug}/cart'], ['#^/u/[a-z]+$#', '/u/{name}']], $c->endpointRules);
        self::assertSame(['pin', 'otp'], $c->redactKeys);
        self::assertSame(['/ACME-\d{6}/'], $c->redactPatterns);
        self::assertSame('/var/spool/bitville-apm', $c->spoolDir);
        self::assertSame('/var/spool/bitville-apm', $c->spoolDirectory());
        self::assertTrue($c->spoolDirIsExplicit());
        self::assertSame(1048576, $c->spoolMaxBytes);
        self::assertSame('web-1', $c->host);
        self::assertSame('www', $c->pool);
    }

    public function testEnvironmentListsUseNewlinesOrDoubleSemicolons(): void
    {
        $c = Config::fromValues([
            'enabled' => '1', 'project' => 'p', 'socket' => '/s',
            'endpoint_rules' => "#^/a/.*# => /a/{rest} ;; #^/b$# => /b",
            'redact_patterns' => "/x\\d+/\n/y\\d+/",
        ]);
        self::assertSame([['#^/a/.*#', '/a/{rest}'], ['#^/b$#', '/b']], $c->endpointRules);
        self::assertSame(['/x\d+/', '/y\d+/'], $c->redactPatterns);
    }

    public function testSpoolDir(): void
    {
        $base = ['enabled' => '1', 'project' => 'shop', 'socket' => '/run/bitville-apm/agent.sock'];
        $c = Config::fromValues($base);
        self::assertSame('/run/bitville-apm/agent.spool', $c->spoolDirectory());
        self::assertFalse($c->spoolDirIsExplicit());
        foreach (['off', 'OFF', ' off '] as $off) {
            $c = Config::fromValues($base + ['spool_dir' => $off]);
            self::assertSame('', $c->spoolDirectory(), "spool_dir=\"$off\"");
            self::assertFalse($c->spoolDirIsExplicit());
        }
        $c = Config::fromValues($base + ['spool_dir' => '/var/spool/x']);
        self::assertSame('/var/spool/x', $c->spoolDirectory());
        self::assertTrue($c->spoolDirIsExplicit());
        self::assertSame('', Config::fromValues([])->spoolDirectory(), 'disabled: no spool');
    }

    public function testSiteFramesRangeIsTheProtocolLimit(): void
    {
        $base = ['enabled' => '1', 'project' => 'p', 'socket' => '/s'];
        $max = \Bitville\Apm\Messages::MAX_SITE_FRAMES;
        self::assertSame($max, Config::fromValues($base + ['sql_site_frames' => (string) $max])->sqlSiteFrames);
        $this->expectException(ConfigException::class);
        Config::fromValues($base + ['sql_site_frames' => (string) ($max + 1)]);
    }

    public function testEnvNames(): void
    {
        self::assertSame(array_keys(Config::DEFAULTS), array_values(Config::ENV_KEYS));
        self::assertSame((string) Config::DEFAULT_SQL_SITE_FRAMES, Config::DEFAULTS['sql_site_frames']);
        self::assertSame((string) Config::DEFAULT_SLOW_THRESHOLD_MS, Config::DEFAULTS['slow_threshold_ms']);
        foreach (Config::ENV_KEYS as $name => $key) {
            self::assertSame(Config::ENV_PREFIX . strtoupper($key), $name);
        }
    }

    public function testUnderFpmOnlyServerIsRead(): void
    {
        putenv('BITVILLE_APM_PROJECT=from-getenv');
        try {
            $c = Config::load(['BITVILLE_APM_ENABLED' => '1', 'BITVILLE_APM_SOCKET' => '/s', 'BITVILLE_APM_PROJECT' => 'from-server'], false);
            self::assertSame('from-server', $c->project);
            $this->expectException(ConfigException::class);
            $this->expectExceptionMessage('needs project');
            Config::load(['BITVILLE_APM_ENABLED' => '1', 'BITVILLE_APM_SOCKET' => '/s'], false);
        } finally {
            putenv('BITVILLE_APM_PROJECT');
        }
    }

    public function testServerWinsOverGetenv(): void
    {
        putenv('BITVILLE_APM_PROJECT=from-getenv');
        try {
            $c = Config::load(['BITVILLE_APM_CONFIG' => '', 'BITVILLE_APM_ENABLED' => '1', 'BITVILLE_APM_SOCKET' => '/s', 'BITVILLE_APM_PROJECT' => 'from-server']);
            self::assertSame('from-server', $c->project);
            $c = Config::load(['BITVILLE_APM_CONFIG' => '', 'BITVILLE_APM_ENABLED' => '1', 'BITVILLE_APM_SOCKET' => '/s']);
            self::assertSame('from-getenv', $c->project);
        } finally {
            putenv('BITVILLE_APM_PROJECT');
        }
    }

    /** @return array<string, array{array<string, mixed>, string}> */
    public static function broken(): array
    {
        $ok = ['enabled' => '1', 'project' => 'shop', 'socket' => '/run/x.sock'];
        return [
            'no project' => [['enabled' => '1', 'socket' => '/s'], 'needs project'],
            'no socket' => [['enabled' => '1', 'project' => 'p'], 'needs socket'],
            'bad project' => [['project' => 'shop eu'] + $ok, 'project'],
            'long socket' => [['socket' => '/' . str_repeat('s', 120)] + $ok, 'socket'],
            'bad bool' => [['enabled' => 'maybe'], 'enabled'],
            'bad profiler' => [['profiler' => 'blackfire'] + $ok, 'profiler'],
            'rate too high' => [['sample_rate' => '1.5'] + $ok, 'sample_rate'],
            'rate not a number' => [['sample_rate' => 'half'] + $ok, 'sample_rate'],
            'negative int' => [['slow_threshold_ms' => '-1'] + $ok, 'slow_threshold_ms'],
            'sql length over the protocol limit' => [['sql_max_length' => '9000'] + $ok, 'sql_max_length'],
            'too many statements' => [['sql_max_statements' => '501'] + $ok, 'sql_max_statements'],
            'zero period' => [['excimer_period_ms' => '0'] + $ok, 'excimer_period_ms'],
            'rule without arrow' => [['endpoint_rules' => '#x#'] + $ok, 'endpoint_rules'],
            'rule bad regex' => [['endpoint_rules' => '#(unclosed# => /x'] + $ok, 'bad regex'],
            'pattern bad regex' => [['redact_patterns' => '/[a-/'] + $ok, 'bad regex'],
            'bad redact key' => [['redact_keys' => 'ok, not ok'] + $ok, 'redact_keys'],
            'unknown key' => [['sampling' => '1'] + $ok, 'unknown key'],
            'list for a scalar' => [['project' => ['a']] + $ok, 'project'],
            'pool too long' => [['pool' => str_repeat('p', 65)] + $ok, 'pool'],
        ];
    }

    /**
     * @dataProvider broken
     * @param array<string, mixed> $values
     */
    public function testBrokenConfigThrows(array $values, string $mention): void
    {
        try {
            Config::fromValues($values);
            self::fail('no ConfigException');
        } catch (ConfigException $e) {
            self::assertStringContainsString($mention, $e->getMessage());
        }
    }

    public function testExplicitFileMustBeReadable(): void
    {
        $this->expectException(ConfigException::class);
        $this->expectExceptionMessage('cannot read config file ' . $this->dir . '/missing.ini');
        Config::load(['BITVILLE_APM_CONFIG' => $this->dir . '/missing.ini']);
    }

    public function testExplicitFileMustParse(): void
    {
        file_put_contents($this->dir . '/bad.ini', "enabled = 1\n[unclosed\n");
        $this->expectException(ConfigException::class);
        $this->expectExceptionMessage('cannot parse config file');
        Config::load(['BITVILLE_APM_CONFIG' => $this->dir . '/bad.ini']);
    }

    public function testBadRegexDoesNotWarn(): void
    {
        $warnings = 0;
        set_error_handler(static function () use (&$warnings): bool {
            $warnings++;
            return true;
        });
        try {
            Config::fromValues(['enabled' => '1', 'project' => 'p', 'socket' => '/s', 'redact_patterns' => 'no delimiters']);
            self::fail('no ConfigException');
        } catch (ConfigException $e) {
            self::assertStringContainsString('bad regex', $e->getMessage());
        } finally {
            restore_error_handler();
        }
        self::assertSame(0, $warnings);
    }

    public function testEveryKeyIsDocumented(): void
    {
        $readme = (string) file_get_contents(dirname(__DIR__) . '/README.md');
        foreach (array_keys(Config::DEFAULTS) as $key) {
            self::assertStringContainsString('| `' . $key . '` | `BITVILLE_APM_' . strtoupper($key) . '` |', $readme, "README lacks a row for $key");
        }
    }
}
