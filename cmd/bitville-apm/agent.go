package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bitville/bitville-apm/exporters/fpm"
	"github.com/bitville/bitville-apm/exporters/host"
	"github.com/bitville/bitville-apm/exporters/phpagent"
	"github.com/bitville/bitville-apm/internal/buildinfo"
	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/web"
)

// The agent's raw traces: their Loki job label, and their spool when
// --events.spool-dir is not given (a state directory: the spool outlives a
// reboot, unlike the PHP agents' one under /run).
const (
	agentJob         = "bitville-apm-agent"
	agentEventsSpool = "/var/lib/bitville-apm/events"
)

// AgentCmd runs the per-host agent daemon. Its flags are those of
// phpagent.Config (and fpm.Config within it) and host.Config, where each is
// declared once.
type AgentCmd struct {
	phpagent.Config `embed:""`
	Host            host.Config     `embed:""` // the host's processes and pressure (exporters/host)
	Events          rawtrace.Config `embed:""` // raw traces to Loki and Graylog (internal/rawtrace)
	Push            push.Config     `embed:""` // metrics and raw traces to pushgw (internal/push)
	WebConfigFile   string          `name:"web.config.file" placeholder:"FILE" help:"Web configuration file (Prometheus exporter-toolkit format) for TLS and basic authentication of every path, /api/v1/ included; checked at start, read again per connection and request. Empty: plain HTTP, no authentication."`
}

// newRegistry returns the registry of a daemon: the Go and process
// collectors and a build-info gauge called name (value 1; labels version,
// revision, goversion), with the build it describes.
func newRegistry(name, help string) (*prometheus.Registry, buildinfo.Info) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := buildinfo.Get()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        name,
		Help:        help,
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg, bi
}

// Run starts the daemon and blocks until SIGTERM or SIGINT, then stops
// reading, lets in-progress scrapes finish and exits.
func (c *AgentCmd) Run(log *slog.Logger) error {
	cfg := c.Config
	if err := errors.Join(cfg.Validate(), c.Host.Validate(), c.Events.Validate(), c.Push.Validate()); err != nil {
		return fmt.Errorf("invalid agent configuration: %w", err)
	}
	if err := web.CheckConfigFile(c.WebConfigFile); err != nil {
		return err
	}
	log = log.With("component", "agent")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg, bi := newRegistry("bitville_agent_build_info", "Build of the running agent (value is always 1).")

	// The agent and php-fpm's monitor, wired one way: the monitor's events
	// go to the agent, enriched by what the agent knows of the worker's
	// request; the monitor never calls back into the agent otherwise.
	agent := phpagent.New(cfg, log, reg)
	pushing, err := startPush(c.Push, agentJob, agentPushSpool, log)
	if err != nil {
		return err
	}
	events, err := rawtrace.New(c.Events, rawtrace.Options{Job: agentJob, SpoolDir: agentEventsSpool, Log: log}, reg, pushing.sinks()...)
	if err != nil {
		return err
	}
	if events.Enabled() {
		agent.ShipTo(events, int(c.Events.MaxLineBytes))
	}
	overflow, expired := agent.SeriesCounters()
	php := fpm.New(fpm.Options{
		Config:         cfg.FPM,
		LongRequest:    cfg.LongRequestThreshold,
		SeriesTTL:      cfg.SeriesTTL,
		Log:            log,
		Sink:           agent.EmitFPM,
		Lookup:         agent.FPMRequest,
		SeriesOverflow: overflow,
		SeriesExpired:  expired,
	}, reg)
	var procs *host.Collector
	if c.Host.Enabled {
		procs = host.New(host.Options{
			Config:         c.Host,
			SeriesTTL:      cfg.SeriesTTL,
			Log:            log,
			SeriesOverflow: overflow,
			SeriesExpired:  expired,
		}, reg)
	}
	conn, err := phpagent.ListenSocket(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", agent.Handler(reg, bi.Version))
	mux.Handle("GET /api/v1/fpm", php.Handler())
	srv, err := web.Listen(cfg.ListenAddress, c.WebConfigFile, mux, log)
	if err != nil {
		conn.Close()
		return err
	}
	if err := phpagent.PrepareSpoolDir(cfg); err != nil {
		// The PHP agents then drop what the socket refuses, as without a
		// spool: worth a warning, not a refusal to start.
		log.Warn("cannot prepare the spool", "err", err)
	}
	rcvbuf, _ := phpagent.ReceiveBuffer(conn.UnixConn)
	switch {
	case conn.QueueErr != nil:
		log.Warn("the socket queues few datagrams: PHP workers will drop messages when the daemon falls behind", "max_queued_datagrams", conn.QueueLen, "err", conn.QueueErr)
	case conn.QueueRaised:
		log.Info("raised net.unix.max_dgram_qlen", "value", conn.QueueLen)
	}
	log.Info("agent started", "version", bi.Version, "socket", cfg.Socket, "web", srv.Addr().String(), "receive_buffer", rcvbuf, "max_queued_datagrams", conn.QueueLen, "readers", cfg.Readers,
		"spool", cfg.SpoolPath(), "fpm_status", len(cfg.FPM.StatusURIs), "fpm_slowlogs", len(cfg.FPM.Slowlogs), "host", c.Host.Enabled,
		"loki", c.Events.LokiURL != "", "gelf", c.Events.GELFURL != "")

	// The raw traces outlive the readers: what the last messages produce
	// is spooled before the pipeline's clean stop.
	defer events.Start()()
	// The push outlives them too: its last snapshot holds their counts.
	stopPush, err := pushing.start(reg, reg)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		conn.Close()
		return err
	}
	defer stopPush()

	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve() }()

	bgDone := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Go(func() { agent.RunBackground(ctx) })
		wg.Go(func() { php.Run(ctx) })
		if procs != nil {
			wg.Go(func() { procs.Run(ctx) })
		}
		wg.Wait()
		close(bgDone)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- agent.Serve(ctx, conn, cfg.Readers) }()
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		stop()
		<-serveErr
		<-bgDone
		return fmt.Errorf("http server stopped: %w", err)
	}
	log.Info("stopping")
	if err := <-serveErr; err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("closing the socket", "err", err)
	}
	<-bgDone
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("cannot stop the http server cleanly: %w", err)
	}
	log.Info("stopped")
	return nil
}
