// Package mixin holds Bitville APM's Grafana dashboards and Prometheus
// rules as code, generated and tested together like a monitoring mixin:
// the recording rules the dashboards, the alerts and `bitville-apm top`
// read, the alerts (with template queries that name the offenders), and
// the dashboards (grafana-foundation-sdk). `go run ./internal/mixin/gen`
// (`make generate`) writes them to alerts/ and dashboards/; a test fails
// when the committed files differ from what the code generates.
package mixin

import (
	"errors"
	"fmt"
	"time"
)

// Config is what a deployment may tune. The committed files use
// DefaultConfig; the end-to-end test generates rules with lower
// thresholds.
type Config struct {
	// Jobs, for the "is it scraped at all" alerts (up == 0). Everything
	// else selects by metric name, which is unique to each exporter.
	AgentJob      string // job of `bitville-apm agent`
	PgExporterJob string // job of `bitville-apm pg-exporter`
	NodeJob       string // job of node_exporter (the load alert joins it)

	LoadPerCore    float64       // BitvilleLoadSpike: node_load1 per CPU core above this …
	LoadFor        time.Duration // … for this long
	ListenQueue    float64       // BitvilleFPMListenQueue: connections waiting for a worker
	EndpointP95    float64       // BitvilleEndpointSlow: p95 wall seconds …
	EndpointMinRPS float64       // … of endpoints with at least this many requests/s
	PgAASPerCore   float64       // BitvillePgActiveSessionsHigh: active sessions per CPU core of the database host
	LockWait       float64       // BitvillePgLockWaits: seconds a session waits on a lock
	LongXact       float64       // BitvillePgLongTransaction: seconds a transaction is open
	IdleInXact     float64       // BitvillePgIdleInTransaction: seconds a session is idle in transaction

	RunbookURL   string // base of runbook_url; the alert name and ".md" are appended
	DashboardURL string // base of the dashboard links in alerts ("" = none): Grafana's URL
}

// DefaultConfig is the configuration of the committed files.
func DefaultConfig() Config {
	return Config{
		AgentJob:       "bitville-agent",
		PgExporterJob:  "bitville-pg-exporter",
		NodeJob:        "node",
		LoadPerCore:    2,
		LoadFor:        2 * time.Minute,
		ListenQueue:    5,
		EndpointP95:    2,
		EndpointMinRPS: 0.1,
		PgAASPerCore:   1,
		LockWait:       30,
		LongXact:       600,
		IdleInXact:     120,
		RunbookURL:     "https://github.com/bitville/bitville-apm/blob/main/docs/runbooks/",
		DashboardURL:   "",
	}
}

// Validate reports every unusable setting.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.AgentJob != "" && c.PgExporterJob != "" && c.NodeJob != "", "the job names must not be empty")
	check(c.LoadPerCore >= 0 && c.LoadFor >= 0, "LoadPerCore and LoadFor must not be negative")
	check(c.ListenQueue >= 0 && c.EndpointP95 > 0 && c.EndpointMinRPS >= 0, "the php-fpm and endpoint thresholds must not be negative")
	check(c.PgAASPerCore > 0 && c.LockWait > 0 && c.LongXact > 0 && c.IdleInXact > 0, "the PostgreSQL thresholds must be positive")
	check(c.RunbookURL != "", "RunbookURL must not be empty")
	return errors.Join(errs...)
}
