// Package pgexporter is `bitville-apm pg-exporter`: PostgreSQL statement
// statistics joined to the PHP side by the same query fingerprint
// (query_fp). This file holds its configuration.
package pgexporter

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

// Config is the configuration of the exporter. Its fields are the
// pg-exporter's flags: name, default and help live in the tags, once (the
// command embeds Config; DefaultConfig reads the defaults from the tags).
type Config struct {
	DSNs             []string      `name:"pg.dsn" required:"" placeholder:"DSN" help:"PostgreSQL to read (repeatable, or comma-separated in the environment): a libpq URL (postgres://user@host:5432/db?sslmode=disable) or key=value string. Each is one server, labelled server=\"host:port/database\", read over pg.connections connections plus one for the background sampler. The role needs pg_monitor; the database needs CREATE EXTENSION pg_stat_statements (and shared_preload_libraries = pg_stat_statements)."`
	StatementTimeout time.Duration `name:"pg.statement-timeout" default:"2s" help:"statement_timeout and lock_timeout of every query the exporter runs, and its connect timeout."`
	ScrapeTimeout    time.Duration `name:"pg.scrape-timeout" default:"8s" help:"A scrape answers within this, however slow or locked the database; collectors that did not finish count as failed."`
	Connections      int           `name:"pg.connections" default:"2" help:"Connections per server that a scrape's collectors share, run concurrently (1 to 8; 1 runs them one after another). The background sampler has one more."`
	TopQueries       int           `name:"limits.queries" default:"500" help:"Query fingerprints per server with series of their own: the heaviest by recent time; the rest are counted as query_fp=\"other\"."`
	TextCache        int           `name:"pg.text-cache" default:"20000" help:"queryid → fingerprint entries kept per server, so query texts are read only for new queryids."`
	ActivityInterval time.Duration `name:"pg.activity-interval" default:"1s" help:"How often pg_stat_activity is sampled in the background (active-session history: rate() of bitville_pg_session_samples_total is the average number of active sessions)."`
	LabelLimit       int           `name:"limits.session-labels" default:"200" help:"query_fp and endpoint values per server in the session samples and lock metrics; more are counted as \"other\"."`
	LabelTTL         time.Duration `name:"limits.session-labels-ttl" default:"1h" help:"A query_fp or endpoint value not seen for this long gives its place under limits.session-labels back, and its session sample series go (0: never, the first values keep their places)."`

	// Raw-trace events (pg_locks, pg_activity), built from the background
	// samples; the sinks are configured by the command.
	EventsProject           string        `name:"events.project" default:"postgres" help:"Project of the pg-exporter's raw-trace events (the Loki label project, GELF _project)."`
	LockWaitThreshold       time.Duration `name:"events.lock-wait-threshold" default:"1s" help:"A pg_locks event reports a lock tree once a session in it has waited on a lock longer than this (seen by the pg.activity-interval sampler)."`
	LockRepeat              time.Duration `name:"events.lock-repeat" default:"1m" help:"A lock tree still there (same root session, same transaction) is reported again this often."`
	ActiveSessionsThreshold int           `name:"events.active-sessions-threshold" default:"20" help:"A pg_activity event snapshots the sessions while more than this many are non-idle (the exporter's own left out); 0: never."`
	ActivityEvery           time.Duration `name:"events.activity-every" default:"10s" help:"At most one pg_activity event per server this often."`
}

// DefaultConfig returns the defaults of the flags (the tags of Config),
// with no server.
func DefaultConfig() Config {
	var c Config
	flagdefaults.Must(&c)
	return c
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
	check(strings.TrimSpace(c.EventsProject) != "", "events.project must not be empty")
	check(c.LockWaitThreshold > 0, "events.lock-wait-threshold %s must be positive", c.LockWaitThreshold)
	// The sampler looks once per pg.activity-interval: a shorter period
	// would promise what it cannot keep.
	check(c.LockRepeat >= c.ActivityInterval, "events.lock-repeat %s must be at least pg.activity-interval %s", c.LockRepeat, c.ActivityInterval)
	check(c.ActiveSessionsThreshold >= 0, "events.active-sessions-threshold %d must be 0 (off) or more", c.ActiveSessionsThreshold)
	check(c.ActivityEvery >= c.ActivityInterval, "events.activity-every %s must be at least pg.activity-interval %s", c.ActivityEvery, c.ActivityInterval)
	return errors.Join(errs...)
}
