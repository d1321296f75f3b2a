// Package fpm watches php-fpm itself for `bitville-apm agent`, beside what
// the PHP agent reports from inside the workers: it reads each pool's
// status page straight over FastCGI (no web server in between) at scrape
// time and turns it into the bitville_fpm_* metrics and the running view of
// /api/v1/fpm, and it follows php-fpm's slowlogs through rotation. Workers
// running past the long-request threshold and slowlog entries become events
// for the agent's raw-trace sinks.
//
// A Monitor knows nothing of the agent. It is given, through Options, a
// Sink for its events and a Lookup from a worker pid to the request the PHP
// agent reported there (to enrich those events); it registers its own
// metrics. Data flows one way: php-fpm → Monitor → Sink.
//
// The pieces, one subject a file: config.go (the flags), status.go (the
// status page parser), read.go (reading the pools), collector.go (their
// metrics), events.go (the seam: events, sink, lookup), view.go
// (/api/v1/fpm), slowlog_parse.go, slowlog_follow.go and
// slowlog_metrics.go (the slowlogs).
package fpm

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/fastcgi"
	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// Options are what a Monitor is built from. Only Config is required.
type Options struct {
	Config Config
	// LongRequest is the agent's long-request threshold: workers running
	// a request for longer are counted and reported once as events.
	LongRequest time.Duration
	// SeriesTTL is how long a slowlog function label value may stay idle
	// before its series is removed (the agent's series TTL).
	SeriesTTL time.Duration
	Log       *slog.Logger     // nil: no logs
	Now       func() time.Time // nil: time.Now
	Sink      Sink             // nil: events are dropped
	Lookup    Lookup           // nil: events carry only what php-fpm tells
	// SeriesOverflow and SeriesExpired count, by their one label "label",
	// the label values sent to "other" at their limit and those removed
	// after SeriesTTL idle: the agent's bitville_agent_series_overflow_total
	// and bitville_agent_series_expired_total, which fpm updates for the
	// labels "slowlog_pool" and "slowlog_function". Nil: not counted.
	SeriesOverflow, SeriesExpired *prometheus.CounterVec
}

// Monitor reads the configured pools' status pages and follows the
// slowlogs. Safe for concurrent use.
type Monitor struct {
	cfg         Config
	longRequest time.Duration
	seriesTTL   time.Duration
	log         *slog.Logger
	now         func() time.Time
	sink        Sink
	lookup      Lookup

	pools   []*statusPage
	labelMu sync.Mutex             // guards statusPage.label
	errors  *prometheus.CounterVec // pool, reason
	logs    *throttle.Throttle     // status read failures

	slow      *slowlogMetrics
	slowLogs  *throttle.Throttle // invalid slowlog lines
	slowState slowlogState
}

// New returns a monitor of o.Config whose metrics are registered on reg.
// A status URI that does not parse is logged and skipped (Config.Validate
// rejects it).
func New(o Options, reg prometheus.Registerer) *Monitor {
	m := &Monitor{
		cfg:         o.Config,
		longRequest: o.LongRequest,
		seriesTTL:   o.SeriesTTL,
		log:         o.Log,
		now:         o.Now,
		sink:        o.Sink,
		lookup:      o.Lookup,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_status_errors_total",
			Help: "php-fpm status page reads that failed, by reason (connect, timeout, fastcgi, http_status, parse).",
		}, []string{"pool", "reason"}),
		logs:     throttle.New(time.Minute),
		slowLogs: throttle.New(time.Minute),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("collector", "fpm")
	if m.now == nil {
		m.now = time.Now
	}
	if m.sink == nil {
		m.sink = func(Event) {}
	}
	if m.lookup == nil {
		m.lookup = func(int) (Request, bool) { return Request{}, false }
	}
	for _, s := range o.Config.StatusURIs {
		t, err := ParseStatusURI(s)
		if err != nil {
			m.log.Error("ignoring php-fpm status uri", "err", err)
			continue
		}
		m.pools = append(m.pools, &statusPage{
			target: t,
			client: &fastcgi.Client{Network: t.Network, Address: t.Address},
			label:  t.URI,
			long:   make(map[requestKey]bool),
		})
	}
	follow := len(o.Config.Slowlogs) > 0
	counter := func(v *prometheus.CounterVec, label string, create bool) labelset.Counter {
		if v == nil || !create {
			return nil
		}
		return v.WithLabelValues(label)
	}
	// The overflow series start at zero always, the expiry ones only when
	// slowlogs are followed: an agent without them shows no slowlog
	// expiry.
	counter(o.SeriesExpired, "slowlog_pool", follow)
	m.slow = newSlowlogMetrics(
		counter(o.SeriesOverflow, "slowlog_pool", true),
		counter(o.SeriesOverflow, "slowlog_function", true),
		counter(o.SeriesExpired, "slowlog_function", follow))
	// One collector for everything fpm: the counters a status read updates
	// are collected after the read, so a scrape shows its own errors.
	reg.MustRegister(&collector{m: m})
	return m
}

// Run polls the status pages (every Config.PollInterval, so long-running
// workers are reported even when nobody scrapes) and follows the slowlogs
// until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { m.poll(ctx, m.cfg.PollInterval) })
	wg.Go(func() { m.follow(ctx, slowlogPollInterval) })
	wg.Wait()
}
