// Package pgexporter is `bitville-apm pg-exporter`: PostgreSQL statement
// statistics joined to the PHP side by the same query fingerprint
// (query_fp). This file holds its configuration.
package pgexporter

import (
	"errors"
	"fmt"
	"time"
)

// Config is the validated configuration of the exporter.
type Config struct {
	DSNs             []string      // one per server (and database); libpq URL or key=value
	StatementTimeout time.Duration // statement_timeout of every query the exporter runs
	ScrapeTimeout    time.Duration // a scrape answers within this, whatever the database does
	Connections      int           // connections per server a scrape's collectors share (the sampler has one more)
	TopQueries       int           // query_fp label values per server; more are counted as "other"
	TextCache        int           // queryid → fingerprint entries kept per server
	ActivityInterval time.Duration // pg_stat_activity sampling period (background)
	LabelLimit       int           // values per label (query_fp, endpoint) of the session samples and lock metrics; more are "other"
	LabelTTL         time.Duration // a value of those labels unseen for this long gives its place back (its series go); 0: never
}

// DefaultConfig returns the defaults documented in `bitville-apm pg-exporter --help`.
func DefaultConfig() Config {
	return Config{
		StatementTimeout: 2 * time.Second,
		ScrapeTimeout:    8 * time.Second,
		Connections:      2,
		TopQueries:       500,
		TextCache:        20000,
		ActivityInterval: time.Second,
		LabelLimit:       200,
		LabelTTL:         time.Hour,
	}
}

// Validate reports every invalid setting at once.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(len(c.DSNs) > 0, "pg.dsn: at least one is needed")
	check(c.StatementTimeout >= 10*time.Millisecond, "pg.statement-timeout %s must be at least 10ms", c.StatementTimeout)
	check(c.ScrapeTimeout >= c.StatementTimeout, "pg.scrape-timeout %s must be at least pg.statement-timeout %s", c.ScrapeTimeout, c.StatementTimeout)
	check(c.Connections >= 1 && c.Connections <= 8, "pg.connections %d must be between 1 and 8", c.Connections)
	check(c.TopQueries >= 1, "limits.queries must be at least 1")
	check(c.TextCache >= 100, "pg.text-cache must be at least 100")
	check(c.ActivityInterval >= 100*time.Millisecond && c.ActivityInterval <= time.Minute, "pg.activity-interval %s must be between 100ms and 1m", c.ActivityInterval)
	check(c.LabelLimit >= 1, "limits.session-labels must be at least 1")
	check(c.LabelTTL == 0 || c.LabelTTL >= time.Minute, "limits.session-labels-ttl %s must be 0 (never) or at least 1m", c.LabelTTL)
	return errors.Join(errs...)
}
