package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/exporters/pgexporter"
	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/web"
)

// The pg-exporter's raw traces: their Loki job label, and their spool when
// --events.spool-dir is not given.
const (
	pgExporterJob         = "bitville-apm-pg-exporter"
	pgExporterEventsSpool = "/var/lib/bitville-apm/pg-exporter-events"
)

// PgExporterCmd runs the PostgreSQL exporter.
type PgExporterCmd struct {
	pgexporter.Config `embed:""`
	Events            rawtrace.Config `embed:""` // lock trees and activity snapshots to Loki and Graylog (internal/rawtrace)
	Push              push.Config     `embed:""` // metrics and raw traces to pushgw (internal/push)
	ListenAddress     string          `name:"web.listen-address" default:":19101" placeholder:"ADDR" help:"Address for /, /metrics, /healthz and /readyz."`
	WebConfigFile     string          `name:"web.config.file" placeholder:"FILE" help:"Web configuration file (Prometheus exporter-toolkit format) for TLS and basic authentication of every path; checked at start, read again per connection and request. Empty: plain HTTP, no authentication."`
}

// Run serves the exporter until SIGTERM or SIGINT.
func (c *PgExporterCmd) Run(log *slog.Logger) error {
	if err := web.CheckConfigFile(c.WebConfigFile); err != nil {
		return err
	}
	cfg := c.Config
	log = log.With("component", "pg-exporter")
	if err := errors.Join(c.Events.Validate(), c.Push.Validate()); err != nil {
		return fmt.Errorf("invalid pg-exporter configuration: %w", err)
	}
	exp, err := pgexporter.New(cfg, log)
	if err != nil {
		return fmt.Errorf("invalid pg-exporter configuration: %w", err)
	}
	defer exp.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg, bi := newRegistry("bitville_pg_exporter_build_info", "Build of the running pg-exporter (value is always 1).")
	reg.MustRegister(exp)
	pushing, err := startPush(c.Push, pgExporterJob, pgExporterPushSpool, log)
	if err != nil {
		return err
	}
	events, err := rawtrace.New(c.Events, rawtrace.Options{Job: pgExporterJob, SpoolDir: pgExporterEventsSpool, Log: log}, reg, pushing.sinks()...)
	if err != nil {
		return err
	}
	if events.Enabled() {
		exp.ShipTo(events)
	}
	// Stopped last (defers run in reverse): the sampler's last events are
	// spooled before the pipeline's clean stop.
	defer events.Start()()
	stopPush, err := pushing.start(reg, reg)
	if err != nil {
		return err
	}
	defer stopPush()

	srv, err := web.Listen(c.ListenAddress, c.WebConfigFile, exp.Handler(reg, bi.Version), log)
	if err != nil {
		return err
	}
	log.Info("pg-exporter started", "version", bi.Version, "web", srv.Addr().String(), "servers", len(cfg.DSNs), "loki", c.Events.LokiURL != "", "gelf", c.Events.GELFURL != "")
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
