package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// The daemons' spools of metrics snapshots not yet pushed, when
// --push.spool-dir is not given.
const (
	agentPushSpool      = "/var/lib/bitville-apm/push"
	pgExporterPushSpool = "/var/lib/bitville-apm/pg-exporter-push"
)

// pushing is a daemon's push to pushgw (--push.url): the sink its raw
// traces go to, and the pusher of its /metrics. Without push.url it does
// nothing.
type pushing struct {
	cfg   push.Config
	opts  push.Options
	sink  *push.EventSink
	spool string
}

// startPush builds the event sink; the pusher starts once the metrics are
// registered (start).
func startPush(cfg push.Config, job, spool string, log *slog.Logger) (*pushing, error) {
	p := &pushing{cfg: cfg, opts: push.Options{Job: job, Log: log.With("component", "push")}, spool: spool}
	if !cfg.Enabled() {
		return p, nil
	}
	sink, err := push.NewEventSink(cfg, p.opts)
	if err != nil {
		return nil, fmt.Errorf("cannot push to pushgw: %w", err)
	}
	p.sink = sink
	return p, nil
}

// sinks are the raw-trace sinks the push adds: pushgw's, or none.
func (p *pushing) sinks() []rawtrace.Sink {
	if p.sink == nil {
		return nil
	}
	return []rawtrace.Sink{p.sink}
}

// start pushes what g gathers every push.interval, registering the
// pusher's self-metrics on reg; stop pushes a last snapshot.
func (p *pushing) start(g prometheus.Gatherer, reg prometheus.Registerer) (stop func(), err error) {
	if !p.cfg.Enabled() {
		return func() {}, nil
	}
	opts := p.opts
	opts.SpoolDir = p.spool
	pusher, err := push.NewPusher(p.cfg, opts, g, reg)
	if err != nil {
		return nil, fmt.Errorf("cannot push to pushgw: %w", err)
	}
	return pusher.Start(), nil
}
