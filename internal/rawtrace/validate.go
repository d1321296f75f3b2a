package rawtrace

import (
	"errors"
	"fmt"
)

// spoolMinLines is how many of the largest lines the spool must hold at
// least: a smaller spool would evict an event as soon as it is written.
const spoolMinLines = 4

// Validate reports every invalid setting at once.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if c.LokiURL != "" {
		errs = append(errs, checkURL("loki.url", c.LokiURL, "http", "https"))
		check(c.LokiFormat == "protobuf" || c.LokiFormat == "json", "loki.format %q must be protobuf or json", c.LokiFormat)
	}
	if c.GELFURL != "" {
		errs = append(errs, checkURL("gelf.url", c.GELFURL, "udp", "tcp", "http", "https"))
	}
	check((c.LokiTLS.CertFile == "") == (c.LokiTLS.KeyFile == ""), "loki.tls.cert-file and loki.tls.key-file go together")
	check((c.GELFTLS.CertFile == "") == (c.GELFTLS.KeyFile == ""), "gelf.tls.cert-file and gelf.tls.key-file go together")
	check(c.MaxLineBytes > 0, "events.max-line-bytes %s must be positive", c.MaxLineBytes)
	check(c.SpoolMaxBytes >= spoolMinLines*c.MaxLineBytes, "events.spool-max-bytes %s must be at least %d × events.max-line-bytes %s", c.SpoolMaxBytes, spoolMinLines, c.MaxLineBytes)
	check(c.BatchSize >= 1, "events.batch-size %d must be at least 1", c.BatchSize)
	check(c.BatchBytes >= c.MaxLineBytes, "events.batch-bytes %s must be at least events.max-line-bytes %s", c.BatchBytes, c.MaxLineBytes)
	check(c.BatchWait >= 0, "events.batch-wait %s must not be negative", c.BatchWait)
	check(c.Timeout > 0, "events.timeout %s must be positive", c.Timeout)
	check(c.BreakerFailures >= 1, "events.breaker-failures %d must be at least 1", c.BreakerFailures)
	check(c.BreakerProbe > 0, "events.breaker-probe %s must be positive", c.BreakerProbe)
	check(c.BackoffMin > 0, "events.backoff-min %s must be positive", c.BackoffMin)
	check(c.BackoffMax >= c.BackoffMin, "events.backoff-max %s must be at least events.backoff-min %s", c.BackoffMax, c.BackoffMin)
	check(c.RateLimit > 0, "events.rate-limit %g must be positive", c.RateLimit)
	check(c.RateBurst >= 1, "events.rate-burst %d must be at least 1", c.RateBurst)
	return errors.Join(errs...)
}

// checkURL returns an error naming flag unless raw is an absolute URL with
// a host and one of schemes.
func checkURL(flag, raw string, schemes ...string) error {
	if _, err := parseSinkURL(raw, schemes...); err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	return nil
}
