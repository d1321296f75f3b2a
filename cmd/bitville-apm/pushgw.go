package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/web"
	"github.com/bitville/bitville-apm/pushgw"
)

// The gateway's raw traces: their Loki job label (for its own events;
// forwarded ones keep their origin's), and their spool when
// --events.spool-dir is not given.
const (
	pushgwJob         = "bitville-apm-pushgw"
	pushgwEventsSpool = "/var/lib/bitville-apm/pushgw-events"
)

// tokensCheckEvery is how often the gateway looks whether its tokens file
// changed.
const tokensCheckEvery = 5 * time.Second

// PushgwCmd runs the central push gateway.
type PushgwCmd struct {
	pushgw.Config `embed:""`
	RemoteWrite   pushgw.RemoteWriteConfig `embed:""`
	Events        rawtrace.Config          `embed:""` // forwarded events to Loki and Graylog
	ListenAddress string                   `name:"web.listen-address" default:":19102" placeholder:"ADDR" help:"Address for the push endpoints, /, /metrics, /healthz and /readyz."`
	WebConfigFile string                   `name:"web.config.file" placeholder:"FILE" help:"Web configuration file (Prometheus exporter-toolkit format) for TLS and basic authentication of every path but the push endpoints' own token check; checked at start, read again per connection and request. Empty: plain HTTP, no authentication."`
}

// Run serves pushes until SIGTERM or SIGINT; SIGHUP reloads the tokens.
func (c *PushgwCmd) Run(log *slog.Logger) error {
	if err := errors.Join(c.Config.Validate(), c.Events.Validate()); err != nil {
		return fmt.Errorf("invalid pushgw configuration: %w", err)
	}
	if err := web.CheckConfigFile(c.WebConfigFile); err != nil {
		return err
	}
	log = log.With("component", "pushgw")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg, bi := newRegistry("bitville_pushgw_build_info", "Build of the running push gateway (value is always 1).")
	var srv *pushgw.Server
	tokens, err := pushgw.NewTokenSource(c.TokensFile, func(err error) {
		if srv != nil {
			srv.TokensReloaded(err)
		}
	})
	if err != nil {
		return err
	}

	events := c.Events
	if events.LokiTenant == "" && c.LokiTenantPerProject {
		events.LokiTenant = rawtrace.TenantProject
	}
	// The gateway answers 429 at its door (pushgw.events-rate); its
	// pipeline must not drop again what it accepted.
	events.RateLimit, events.RateBurst = unlimitedEvents, unlimitedEventsBurst
	pipeline, err := rawtrace.New(events, rawtrace.Options{Job: pushgwJob, SpoolDir: pushgwEventsSpool, Log: log}, reg)
	if err != nil {
		return err
	}
	var remote *pushgw.RemoteWriter
	if c.RemoteWrite.URL != "" {
		if remote, err = pushgw.NewRemoteWriter(c.RemoteWrite, log, reg); err != nil {
			return err
		}
	}
	srv, err = pushgw.New(c.Config, pushgw.Options{Log: log, Tokens: tokens, Remote: remote, Events: pipeline, Version: bi.Version}, reg)
	if err != nil {
		return err
	}

	httpSrv, err := web.Listen(c.ListenAddress, c.WebConfigFile, srv.Handler(reg), log)
	if err != nil {
		return err
	}
	httpSrv.SetLimits(c.ReadTimeout, c.IdleTimeout, maxHeaderBytes)

	// Stopped in reverse: the HTTP server first (the pushes in progress
	// finish), then the remote writer and the event pipeline flush.
	stopEvents := pipeline.Start()
	defer stopEvents()
	rwCtx, stopRW := context.WithCancel(context.Background())
	rwDone := make(chan struct{})
	go func() {
		if remote != nil {
			remote.Run(rwCtx)
		}
		close(rwDone)
	}()
	defer func() { stopRW(); <-rwDone }()

	done := make(chan struct{})
	defer close(done)
	go srv.RunExpiry(done)
	go tokens.Watch(done, tokensCheckEvery)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				_ = tokens.Reload()
			}
		}
	}()

	log.Info("pushgw started", "version", bi.Version, "web", httpSrv.Addr().String(), "projects", len(tokens.Tokens().Projects()),
		"remote_write", c.RemoteWrite.URL != "", "loki", c.Events.LokiURL != "", "gelf", c.Events.GELFURL != "")
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.Serve() }()
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		return fmt.Errorf("http server stopped: %w", err)
	}
	log.Info("stopping")
	srv.Stopping()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ReadTimeout+time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("cannot stop the http server cleanly: %w", err)
	}
	log.Info("stopped")
	return nil
}

// The gateway's pipeline rate: high enough never to bind, as the door's
// limit (pushgw.events-rate) already did.
const (
	unlimitedEvents      = 1e9
	unlimitedEventsBurst = 1 << 30
)

// maxHeaderBytes bounds a push's request headers: a token, a few names.
const maxHeaderBytes = 64 << 10
