package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/exporters/pgexporter"
	"github.com/bitville/bitville-apm/internal/web"
)

// PgExporterCmd runs the PostgreSQL exporter.
type PgExporterCmd struct {
	DSNs             []string      `name:"pg.dsn" required:"" placeholder:"DSN" help:"PostgreSQL to read (repeatable, or comma-separated in the environment): a libpq URL (postgres://user@host:5432/db?sslmode=disable) or key=value string. Each is one server, labelled server=\"host:port/database\", read over pg.connections connections plus one for the background sampler. The role needs pg_monitor; the database needs CREATE EXTENSION pg_stat_statements (and shared_preload_libraries = pg_stat_statements)."`
	StatementTimeout time.Duration `name:"pg.statement-timeout" default:"2s" help:"statement_timeout and lock_timeout of every query the exporter runs, and its connect timeout."`
	ScrapeTimeout    time.Duration `name:"pg.scrape-timeout" default:"8s" help:"A scrape answers within this, however slow or locked the database; collectors that did not finish count as failed."`
	Connections      int           `name:"pg.connections" default:"2" help:"Connections per server that a scrape's collectors share, run concurrently (1 to 8; 1 runs them one after another). The background sampler has one more."`
	Queries          int           `name:"limits.queries" default:"500" help:"Query fingerprints per server with series of their own: the heaviest by recent time; the rest are counted as query_fp=\"other\"."`
	TextCache        int           `name:"pg.text-cache" default:"20000" help:"queryid → fingerprint entries kept per server, so query texts are read only for new queryids."`
	ActivityInterval time.Duration `name:"pg.activity-interval" default:"1s" help:"How often pg_stat_activity is sampled in the background (active-session history: rate() of bitville_pg_session_samples_total is the average number of active sessions)."`
	SessionLabels    int           `name:"limits.session-labels" default:"200" help:"query_fp and endpoint values per server in the session samples and lock metrics; more are counted as \"other\"."`
	SessionLabelsTTL time.Duration `name:"limits.session-labels-ttl" default:"1h" help:"A query_fp or endpoint value not seen for this long gives its place under limits.session-labels back, and its session sample series go (0: never, the first values keep their places)."`
	ListenAddress    string        `name:"web.listen-address" default:":19101" placeholder:"ADDR" help:"Address for /, /metrics, /healthz and /readyz."`
	WebConfigFile    string        `name:"web.config.file" placeholder:"FILE" help:"Web configuration file (Prometheus exporter-toolkit format) for TLS and basic authentication of every path; checked at start, read again per connection and request. Empty: plain HTTP, no authentication."`
}

// Run serves the exporter until SIGTERM or SIGINT.
func (c *PgExporterCmd) Run(log *slog.Logger) error {
	if err := web.CheckConfigFile(c.WebConfigFile); err != nil {
		return err
	}
	cfg := pgexporter.DefaultConfig()
	cfg.DSNs = c.DSNs
	cfg.StatementTimeout = c.StatementTimeout
	cfg.ScrapeTimeout = c.ScrapeTimeout
	cfg.Connections = c.Connections
	cfg.TopQueries = c.Queries
	cfg.TextCache = c.TextCache
	cfg.ActivityInterval = c.ActivityInterval
	cfg.LabelLimit = c.SessionLabels
	cfg.LabelTTL = c.SessionLabelsTTL
	log = log.With("component", "pg-exporter")
	exp, err := pgexporter.New(cfg, log)
	if err != nil {
		return fmt.Errorf("invalid pg-exporter configuration: %w", err)
	}
	defer exp.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg, bi := newRegistry("bitville_pg_exporter_build_info", "Build of the running pg-exporter (value is always 1).")
	reg.MustRegister(exp)

	srv, err := web.Listen(c.ListenAddress, c.WebConfigFile, exp.Handler(reg, bi.Version), log)
	if err != nil {
		return err
	}
	log.Info("pg-exporter started", "version", bi.Version, "web", srv.Addr().String(), "servers", len(cfg.DSNs))
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve() }()
	bgCtx, stopBg := context.WithCancel(ctx)
	bgDone := make(chan struct{})
	go func() { exp.RunBackground(bgCtx); close(bgDone) }()
	defer func() { stopBg(); <-bgDone }()
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		return fmt.Errorf("http server stopped: %w", err)
	}
	log.Info("stopping")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ScrapeTimeout+2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("cannot stop the http server cleanly: %w", err)
	}
	log.Info("stopped")
	return nil
}
