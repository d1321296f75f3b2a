package rawtrace

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/buildinfo"
)

// New builds the sinks cfg asks for (Loki when loki.url is set, GELF when
// gelf.url is) and a Pipeline in front of them and of extra (the pushgw
// sink of a daemon that pushes). An empty opts.Instance becomes the
// hostname.
func New(cfg Config, opts Options, reg prometheus.Registerer, extra ...Sink) (*Pipeline, error) {
	if opts.Instance == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("cannot name the instance of the raw traces: %w", err)
		}
		opts.Instance = h
	}
	sinks, err := newSinks(cfg, SinkOptions{Job: opts.Job, Instance: opts.Instance, Version: buildinfo.Get().Version})
	if err != nil {
		return nil, err
	}
	sinks = append(sinks, extra...)
	p, err := NewWithSinks(cfg, opts, reg, sinks...)
	if err != nil {
		closeSinks(sinks)
		return nil, err
	}
	return p, nil
}

// newSinks builds the enabled sinks, Loki first; none when neither URL is
// set.
func newSinks(cfg Config, o SinkOptions) ([]Sink, error) {
	var sinks []Sink
	if cfg.LokiURL != "" {
		l, err := NewLoki(cfg, o)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, l)
	}
	if cfg.GELFURL != "" {
		g, err := NewGELF(cfg, o)
		if err != nil {
			closeSinks(sinks)
			return nil, err
		}
		sinks = append(sinks, g)
	}
	return sinks, nil
}

// closeSinks closes sinks that were never used: that only lets their
// connections go, and cannot fail in a way worth reporting.
func closeSinks(sinks []Sink) {
	for _, s := range sinks {
		_ = s.Close()
	}
}
