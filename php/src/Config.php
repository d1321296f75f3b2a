<?php

declare(strict_types=1);

namespace Bitville\Apm;

/**
 * The agent's configuration: an INI file (env BITVILLE_APM_CONFIG, default
 * /etc/bitville-apm/php-agent.ini) with every key overridable by an
 * environment variable BITVILLE_APM_<KEY>, read from $_SERVER first (php-fpm
 * pool env[...] and FastCGI params) and then getenv(). php/README.md documents
 * each key.
 *
 * The agent is disabled unless enabled=1; enabled=1 without a project or a
 * socket, an unknown key, a bad value, a bad regex or an unreadable file that
 * was named explicitly is a broken configuration: load() throws a
 * ConfigException and the caller disables the agent.
 */
final class Config
{
    public const DEFAULT_FILE = '/etc/bitville-apm/php-agent.ini';
    public const ENV_PREFIX = 'BITVILLE_APM_';

    /** The excimer sampling period used when excimer_period_ms is not set. */
    public const DEFAULT_EXCIMER_PERIOD_MS = 100.0;
    /**
     * The real-clock sampling period (excimer_wall_period_ms): a blocking
     * call is one sample however long it lasts, so a coarse period costs
     * little and still measures long waits to ± one period.
     */
    public const DEFAULT_EXCIMER_WALL_PERIOD_MS = 1000;
    /** Requests still running after this long are profiled at the full rate (profile_long_ms). */
    public const DEFAULT_PROFILE_LONG_MS = 1000;

    /**
     * slow_threshold_ms: the daemon's default events.slow-threshold (1s).
     * Faster requests, unless failed or forced, leave their call sites and
     * collapsed stacks out: only the raw traces of requests worth a look
     * use them, and formatting the sites was the larger part of what a
     * statement cost the agent (docs/performance.md).
     */
    public const DEFAULT_SLOW_THRESHOLD_MS = 1000;
    /**
     * Frames of a statement's call site (sql_site_frames): enough to tell
     * the model method from the controller action that called it.
     */
    public const DEFAULT_SQL_SITE_FRAMES = 5;
    /** Upper bound of sql_max_length: the daemon's limit for sql[].q. */
    public const MAX_SQL_LENGTH = 8192;
    /** Upper bound of sql_max_statements: the daemon's limit for sql[]. */
    public const MAX_SQL_STATEMENTS = 500;
    /**
     * Default of spool_max_bytes (64 MiB): room for ~40,000 end messages of
     * 1.5 KiB, minutes of a busy host's requests while the daemon stalls.
     */
    public const DEFAULT_SPOOL_MAX_BYTES = 67108864;
    /** spool_dir value that turns the spool off. */
    public const SPOOL_OFF = 'off';

    /** The daemon's limits for project, host and pool. */
    public const MAX_PROJECT_BYTES = 64;
    public const MAX_HOST_BYTES = 255;
    public const MAX_POOL_BYTES = 64;

    /** Every key with its default, in the order of php/README.md. */
    public const DEFAULTS = [
        'enabled' => '0',
        'project' => '',
        'socket' => '',
        'profiler' => 'excimer',
        'sample_rate' => '0',
        'slow_threshold_ms' => '1000', // DEFAULT_SLOW_THRESHOLD_MS (ConfigTest)
        'excimer_period_ms' => '',
        'excimer_request_rate' => '0.1',
        'excimer_wall_period_ms' => '1000',
        'profile_long_ms' => '1000',
        'progress_after_ms' => '5000',
        'progress_interval_ms' => '5000',
        'force_header_secret' => '',
        'echo_correlation_header' => '0',
        'sqlcommenter' => '1',
        'sqlcommenter_correlation' => '0',
        'sql_max_length' => '2048',
        'sql_max_statements' => '500',
        'sql_site_frames' => '5', // DEFAULT_SQL_SITE_FRAMES (ConfigTest)
        'endpoint_rules' => '',
        'redact_keys' => '',
        'redact_patterns' => '',
        'spool_dir' => '',
        'spool_max_bytes' => '67108864',
        'host' => '',
        'pool' => '',
        'finish_request' => '1',
        'start_delay_ms' => '0',
    ];

    /** The key of each environment variable (BITVILLE_APM_<KEY>). */
    public const ENV_KEYS = [
        'BITVILLE_APM_ENABLED' => 'enabled',
        'BITVILLE_APM_PROJECT' => 'project',
        'BITVILLE_APM_SOCKET' => 'socket',
        'BITVILLE_APM_PROFILER' => 'profiler',
        'BITVILLE_APM_SAMPLE_RATE' => 'sample_rate',
        'BITVILLE_APM_SLOW_THRESHOLD_MS' => 'slow_threshold_ms',
        'BITVILLE_APM_EXCIMER_PERIOD_MS' => 'excimer_period_ms',
        'BITVILLE_APM_EXCIMER_REQUEST_RATE' => 'excimer_request_rate',
        'BITVILLE_APM_EXCIMER_WALL_PERIOD_MS' => 'excimer_wall_period_ms',
        'BITVILLE_APM_PROFILE_LONG_MS' => 'profile_long_ms',
        'BITVILLE_APM_PROGRESS_AFTER_MS' => 'progress_after_ms',
        'BITVILLE_APM_PROGRESS_INTERVAL_MS' => 'progress_interval_ms',
        'BITVILLE_APM_FORCE_HEADER_SECRET' => 'force_header_secret',
        'BITVILLE_APM_ECHO_CORRELATION_HEADER' => 'echo_correlation_header',
        'BITVILLE_APM_SQLCOMMENTER' => 'sqlcommenter',
        'BITVILLE_APM_SQLCOMMENTER_CORRELATION' => 'sqlcommenter_correlation',
        'BITVILLE_APM_SQL_MAX_LENGTH' => 'sql_max_length',
        'BITVILLE_APM_SQL_MAX_STATEMENTS' => 'sql_max_statements',
        'BITVILLE_APM_SQL_SITE_FRAMES' => 'sql_site_frames',
        'BITVILLE_APM_ENDPOINT_RULES' => 'endpoint_rules',
        'BITVILLE_APM_REDACT_KEYS' => 'redact_keys',
        'BITVILLE_APM_REDACT_PATTERNS' => 'redact_patterns',
        'BITVILLE_APM_SPOOL_DIR' => 'spool_dir',
        'BITVILLE_APM_SPOOL_MAX_BYTES' => 'spool_max_bytes',
        'BITVILLE_APM_HOST' => 'host',
        'BITVILLE_APM_POOL' => 'pool',
        'BITVILLE_APM_FINISH_REQUEST' => 'finish_request',
        'BITVILLE_APM_START_DELAY_MS' => 'start_delay_ms',
    ];

    public const PROFILERS = ['excimer', 'tideways', 'xhprof', 'off'];

    // The settings, public for reading and written only by fromValues()
    // (treat a Config as immutable). Declared with their defaults rather
    // than as constructor arguments: a new object copies the defaults in
    // one step, and fromValues() sets only the keys it was given, which
    // keeps building the configuration cheap on every request
    // (docs/performance.md, eighth session). The defaults are the parsed
    // DEFAULTS (ConfigTest).
    public bool $enabled = false;
    public string $project = '';
    public string $socket = '';
    public string $profiler = 'excimer';
    public float $sampleRate = 0.0;
    public int $slowThresholdMs = self::DEFAULT_SLOW_THRESHOLD_MS;
    public float $excimerPeriodMs = self::DEFAULT_EXCIMER_PERIOD_MS;
    public float $excimerRequestRate = 0.1;
    public int $excimerWallPeriodMs = self::DEFAULT_EXCIMER_WALL_PERIOD_MS;
    public int $profileLongMs = self::DEFAULT_PROFILE_LONG_MS;
    public int $progressAfterMs = 5000;
    public int $progressIntervalMs = 5000;
    public string $forceHeaderSecret = '';
    public bool $echoCorrelationHeader = false;
    public bool $sqlcommenter = true;
    public bool $sqlcommenterCorrelation = false;
    public int $sqlMaxLength = 2048;
    public int $sqlMaxStatements = self::MAX_SQL_STATEMENTS;
    public int $sqlSiteFrames = self::DEFAULT_SQL_SITE_FRAMES;
    /** @var list<array{string, string}> endpoint_rules: regex => replacement, applied in order */
    public array $endpointRules = [];
    /** @var list<string> extra sensitive key names */
    public array $redactKeys = [];
    /** @var list<string> extra regexes whose matches are redacted */
    public array $redactPatterns = [];
    /** As configured: '' (the default: derived from socket), 'off', or a path. See spoolDirectory(). */
    public string $spoolDir = '';
    public int $spoolMaxBytes = self::DEFAULT_SPOOL_MAX_BYTES;
    public string $host = '';
    public string $pool = '';
    public bool $finishRequest = true;
    public int $startDelayMs = 0;
    public string $source = 'defaults';

    private function __construct()
    {
    }

    /**
     * The spool directory to use, '' when the spool is off: spool_dir when
     * it names one, else the default derived from socket, which is used
     * only if it exists (see spoolDirIsExplicit()).
     */
    public function spoolDirectory(): string
    {
        if ($this->spoolDir === self::SPOOL_OFF || !$this->enabled) {
            return '';
        }
        return $this->spoolDir !== '' ? $this->spoolDir : self::derivedSpoolDir($this->socket);
    }

    /**
     * True when spool_dir names a directory: the agent creates it if
     * missing and spools even while the socket does not exist. The derived
     * default is created by the daemon (with the socket's group and mode,
     * so that workers can write there) and never by the agent: without a
     * daemon, the agent writes nothing.
     */
    public function spoolDirIsExplicit(): bool
    {
        return $this->spoolDir !== '' && $this->spoolDir !== self::SPOOL_OFF;
    }

    /**
     * The default spool directory of a socket: the same directory, the
     * socket's name without a trailing ".sock", plus ".spool"
     * (/run/bitville-apm/agent.sock -> /run/bitville-apm/agent.spool). The
     * daemon derives it the same way (testdata/protocol/limits.json).
     */
    public static function derivedSpoolDir(string $socket): string
    {
        return (\str_ends_with($socket, '.sock') ? \substr($socket, 0, -5) : $socket) . '.spool';
    }

    /**
     * Reads the file and the environment. $server is $_SERVER: php-fpm puts
     * pool env[...] values and FastCGI params there, and the CLI the
     * environment. getenv() is asked too, for variables $server lacks,
     * except under php-fpm, where $_SERVER already holds the environment and
     * 23 getenv() calls per request would be pure cost.
     *
     * @param array<string, mixed> $server
     * @throws ConfigException
     */
    public static function load(array $server, ?bool $getenv = null): self
    {
        $getenv ??= \PHP_SAPI !== 'fpm-fcgi';
        $path = $server['BITVILLE_APM_CONFIG'] ?? ($getenv ? \getenv('BITVILLE_APM_CONFIG') : false);
        $explicit = \is_string($path) && $path !== '';
        if (!$explicit) {
            $path = self::DEFAULT_FILE;
        }
        $values = [];
        $source = 'environment';
        if ($explicit || \is_file($path)) {
            $values = self::readFile($path);
            $source = $path;
        }
        // The variables that are set, found by the engine in one call
        // that looks each of the few names up in the many variables.
        foreach (\array_intersect_key(self::ENV_KEYS, $server) as $name => $key) {
            $v = $server[$name];
            if (\is_string($v)) {
                $values[$key] = $v;
            }
        }
        if ($getenv) {
            foreach (self::ENV_KEYS as $name => $key) {
                if (!isset($server[$name])) {
                    $v = \getenv($name);
                    if (\is_string($v)) {
                        $values[$key] = $v;
                    }
                }
            }
        }
        return self::fromValues($values, $source);
    }

    /**
     * Validates raw values (strings, or lists of strings for the list keys)
     * into a Config. A disabled configuration is returned without looking at
     * the other keys.
     *
     * @param array<string, mixed> $values
     * @throws ConfigException
     */
    public static function fromValues(array $values, string $source = 'values'): self
    {
        $unknown = \array_diff_key($values, self::DEFAULTS);
        if ($unknown !== []) {
            throw new ConfigException(\sprintf('unknown key "%s"', \array_key_first($unknown)));
        }
        // The three keys read below, with their defaults; the others are
        // read only when given.
        $v = $values + ['enabled' => self::DEFAULTS['enabled'], 'project' => self::DEFAULTS['project'], 'socket' => self::DEFAULTS['socket']];
        $c = new self();
        $c->source = $source;
        // '1', as nearly every configuration says it, needs no parsing.
        if ($v['enabled'] !== '1' && !self::bool($v, 'enabled')) {
            return $c;
        }

        // scalar(), inline for the usual string: these run on every request.
        $project = \is_string($v['project']) ? \trim($v['project']) : self::scalar($v, 'project');
        if ($project === '') {
            throw new ConfigException('enabled=1 needs project');
        }
        if (\preg_match('/^[A-Za-z0-9._-]{1,' . self::MAX_PROJECT_BYTES . '}$/', $project) !== 1) {
            throw new ConfigException(\sprintf('project "%s" must be 1-%d characters of A-Z a-z 0-9 . _ -', self::show($project), self::MAX_PROJECT_BYTES));
        }
        $socket = \is_string($v['socket']) ? \trim($v['socket']) : self::scalar($v, 'socket');
        if ($socket === '') {
            throw new ConfigException('enabled=1 needs socket');
        }
        if (\strlen($socket) > 107 || \str_contains($socket, "\0")) {
            throw new ConfigException(\sprintf('socket "%s" is not a usable unix socket path (at most 107 bytes)', self::show($socket)));
        }
        // Only keys that were given are parsed: the properties' defaults
        // are the parsed DEFAULTS (ConfigTest checks they agree), and
        // skipping the rest keeps this cheap on every request.
        $c->enabled = true;
        $c->project = $project;
        $c->socket = $socket;
        foreach ($values as $key => $_) {
            $field = self::FIELDS[$key] ?? null;
            if ($field === null) {
                continue; // enabled, project, socket: done above
            }
            [$name, $type] = $field;
            $c->$name = match ($type) {
                'bool' => self::bool($v, $key),
                'int' => self::int($v, $key, $field[2], $field[3]),
                'float' => self::float($v, $key, $field[2], $field[3]),
                'string' => self::scalar($v, $key),
                default => self::special($v, $key),
            };
        }
        $host = $c->host;
        $pool = $c->pool;
        if (($host !== '' || $pool !== '') && (\strlen($host) > self::MAX_HOST_BYTES || \strlen($pool) > self::MAX_POOL_BYTES || !Text::isClean($host) || !Text::isClean($pool))) {
            throw new ConfigException(\sprintf('host (at most %d bytes) or pool (at most %d bytes) is too long or has control characters', self::MAX_HOST_BYTES, self::MAX_POOL_BYTES));
        }
        return $c;
    }

    /**
     * The keys fromValues() parses when given: property, type,
     * and the range of numbers.
     */
    private const FIELDS = [
        'profiler' => ['profiler', 'special'],
        'sample_rate' => ['sampleRate', 'float', 0.0, 1.0],
        'slow_threshold_ms' => ['slowThresholdMs', 'int', 0, 86400000],
        'excimer_period_ms' => ['excimerPeriodMs', 'special'],
        'excimer_request_rate' => ['excimerRequestRate', 'float', 0.0, 1.0],
        'excimer_wall_period_ms' => ['excimerWallPeriodMs', 'int', 1, 60000],
        'profile_long_ms' => ['profileLongMs', 'int', 0, 86400000],
        'progress_after_ms' => ['progressAfterMs', 'int', 0, 86400000],
        'progress_interval_ms' => ['progressIntervalMs', 'int', 0, 86400000],
        'force_header_secret' => ['forceHeaderSecret', 'string'],
        'echo_correlation_header' => ['echoCorrelationHeader', 'bool'],
        'sqlcommenter' => ['sqlcommenter', 'bool'],
        'sqlcommenter_correlation' => ['sqlcommenterCorrelation', 'bool'],
        'sql_max_length' => ['sqlMaxLength', 'int', 64, self::MAX_SQL_LENGTH],
        'sql_max_statements' => ['sqlMaxStatements', 'int', 0, self::MAX_SQL_STATEMENTS],
        'sql_site_frames' => ['sqlSiteFrames', 'int', 0, 8], // Messages::MAX_SITE_FRAMES (ConfigTest): a literal keeps this table free of run-time evaluation
        'endpoint_rules' => ['endpointRules', 'special'],
        'redact_keys' => ['redactKeys', 'special'],
        'redact_patterns' => ['redactPatterns', 'special'],
        'spool_dir' => ['spoolDir', 'special'],
        'spool_max_bytes' => ['spoolMaxBytes', 'int', 0, \PHP_INT_MAX],
        'host' => ['host', 'string'],
        'pool' => ['pool', 'string'],
        'finish_request' => ['finishRequest', 'bool'],
        'start_delay_ms' => ['startDelayMs', 'int', 0, 86400000],
    ];

    /**
     * The keys with rules of their own.
     *
     * @param array<string, mixed> $v
     * @throws ConfigException
     */
    private static function special(array $v, string $key): mixed
    {
        switch ($key) {
            case 'profiler':
                $profiler = \strtolower(self::scalar($v, 'profiler'));
                if (!\in_array($profiler, self::PROFILERS, true)) {
                    throw new ConfigException(\sprintf('profiler "%s" must be one of %s', self::show($profiler), \implode(', ', self::PROFILERS)));
                }
                return $profiler;
            case 'excimer_period_ms':
                return self::scalar($v, $key) === '' ? self::DEFAULT_EXCIMER_PERIOD_MS : self::float($v, $key, 0.01, 60000.0);
            case 'endpoint_rules':
                return self::rules($v[$key]);
            case 'redact_keys':
                return self::keys($v[$key]);
            case 'redact_patterns':
                return self::patterns($v[$key]);
            case 'spool_dir':
                $dir = self::scalar($v, $key);
                if (\str_contains($dir, "\0")) {
                    throw new ConfigException('spool_dir contains a NUL byte');
                }
                return \strtolower($dir) === self::SPOOL_OFF ? self::SPOOL_OFF : $dir;
        }
        throw new ConfigException(\sprintf('unknown key "%s"', $key));
    }

    /**
     * @return array<string, mixed>
     * @throws ConfigException
     */
    private static function readFile(string $path): array
    {
        if (!\is_file($path) || !\is_readable($path)) {
            throw new ConfigException(\sprintf('cannot read config file %s', $path));
        }
        $error = '';
        \set_error_handler(static function (int $no, string $msg) use (&$error): bool {
            $error = $msg;
            return true;
        });
        try {
            // RAW: regexes in endpoint_rules must reach us as written, and
            // booleans are parsed here, the same way for file and env.
            $ini = \parse_ini_file($path, false, \INI_SCANNER_RAW);
        } finally {
            \restore_error_handler();
        }
        if (!\is_array($ini)) {
            throw new ConfigException(\sprintf('cannot parse config file %s: %s', $path, $error !== '' ? $error : 'syntax error'));
        }
        return $ini;
    }

    /**
     * @param array<string, mixed> $v
     * @throws ConfigException
     */
    private static function scalar(array $v, string $key): string
    {
        $x = $v[$key];
        if (!\is_string($x)) {
            throw new ConfigException(\sprintf('%s must be a single value, not a list', $key));
        }
        return \trim($x);
    }

    /**
     * @param array<string, mixed> $v
     * @throws ConfigException
     */
    private static function bool(array $v, string $key): bool
    {
        $x = \strtolower(self::scalar($v, $key));
        return match ($x) {
            '1', 'on', 'true', 'yes' => true,
            '0', 'off', 'false', 'no', '' => false,
            default => throw new ConfigException(\sprintf('%s "%s" must be 1 or 0 (on/off, true/false, yes/no)', $key, self::show($x))),
        };
    }

    /**
     * @param array<string, mixed> $v
     * @throws ConfigException
     */
    private static function int(array $v, string $key, int $min, int $max): int
    {
        $x = self::scalar($v, $key);
        if (\preg_match('/^\d{1,18}$/', $x) !== 1 || (int) $x < $min || (int) $x > $max) {
            throw new ConfigException(\sprintf('%s "%s" must be an integer from %d to %d', $key, self::show($x), $min, $max));
        }
        return (int) $x;
    }

    /**
     * @param array<string, mixed> $v
     * @throws ConfigException
     */
    private static function float(array $v, string $key, float $min, float $max): float
    {
        $x = self::scalar($v, $key);
        if (!\is_numeric($x) || !\is_finite((float) $x) || (float) $x < $min || (float) $x > $max) {
            throw new ConfigException(\sprintf('%s "%s" must be a number from %s to %s', $key, self::show($x), $min, $max));
        }
        return (float) $x;
    }

    /**
     * A list key: an INI array (key[] = ...) or one string holding several
     * entries separated by newlines or ";;" (the form env vars use).
     *
     * @return list<string>
     * @throws ConfigException
     */
    private static function listOf(mixed $x, string $key): array
    {
        if (\is_string($x)) {
            $x = \preg_split('/\R|;;/', $x) ?: [];
        }
        if (!\is_array($x)) {
            throw new ConfigException(\sprintf('%s must be a string or a list', $key));
        }
        $out = [];
        foreach ($x as $item) {
            if (!\is_string($item)) {
                throw new ConfigException(\sprintf('%s must be a list of strings', $key));
            }
            $item = \trim($item);
            if ($item !== '') {
                $out[] = $item;
            }
        }
        return $out;
    }

    /**
     * endpoint_rules: "REGEX => REPLACEMENT" entries (split at the last " => ").
     *
     * @return list<array{string, string}>
     * @throws ConfigException
     */
    private static function rules(mixed $x): array
    {
        $rules = [];
        foreach (self::listOf($x, 'endpoint_rules') as $rule) {
            $at = \strrpos($rule, ' => ');
            if ($at === false) {
                throw new ConfigException(\sprintf('endpoint_rules entry "%s" must be "REGEX => REPLACEMENT"', self::show($rule)));
            }
            $re = \trim(\substr($rule, 0, $at));
            self::checkRegex($re, 'endpoint_rules');
            $rules[] = [$re, \trim(\substr($rule, $at + 4))];
        }
        return $rules;
    }

    /**
     * @return list<string>
     * @throws ConfigException
     */
    private static function patterns(mixed $x): array
    {
        $patterns = self::listOf($x, 'redact_patterns');
        foreach ($patterns as $re) {
            self::checkRegex($re, 'redact_patterns');
        }
        return $patterns;
    }

    /**
     * redact_keys: key names separated by commas (or a list).
     *
     * @return list<string>
     * @throws ConfigException
     */
    private static function keys(mixed $x): array
    {
        $keys = [];
        foreach (self::listOf($x, 'redact_keys') as $item) {
            foreach (\explode(',', $item) as $k) {
                $k = \trim($k);
                if ($k === '') {
                    continue;
                }
                if (\preg_match('/^[A-Za-z0-9_.-]{1,64}$/', $k) !== 1) {
                    throw new ConfigException(\sprintf('redact_keys entry "%s" must be 1-64 characters of A-Z a-z 0-9 . _ -', self::show($k)));
                }
                $keys[] = \strtolower($k);
            }
        }
        return $keys;
    }

    /** @throws ConfigException */
    private static function checkRegex(string $re, string $key): void
    {
        $error = '';
        \set_error_handler(static function (int $no, string $msg) use (&$error): bool {
            $error = $msg;
            return true;
        });
        try {
            $ok = \preg_match($re, '') !== false;
        } finally {
            \restore_error_handler();
        }
        if (!$ok) {
            throw new ConfigException(\sprintf('%s: bad regex "%s": %s', $key, self::show($re), $error !== '' ? \preg_replace('/^preg_match\(\): /', '', $error) : \preg_last_error_msg()));
        }
    }

    /** A value quoted in an error message: printable and short. */
    private static function show(string $s): string
    {
        return Text::sanitize($s, 200);
    }
}
