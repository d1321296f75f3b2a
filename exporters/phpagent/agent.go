package phpagent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/periodic"
	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/sqlfp"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// Agent ties the pieces together: it handles decoded datagrams, runs the
// periodic work (in-flight sweep, ranking, expiry) and exposes the gauges
// that are computed at scrape time.
type Agent struct {
	cfg        Config
	log        *slog.Logger
	self       *SelfMetrics
	agg        *Aggregator
	inflight   *InflightTable
	fps        *sqlfp.Cache
	fpsCut     *sqlfp.Cache // for texts the PHP agent truncated
	ring       *EventRing
	traces     tracer             // raw traces: which requests, and where to (ShipTo)
	invalid    *throttle.Throttle // logs of rejected datagrams
	readErrs   *throttle.Throttle // logs of socket read errors
	spoolErrs  *throttle.Throttle // logs of spool files that cannot be taken in
	phpEvicted uint64             // the PHP agents' eviction count at the last spool pass
	now        func() time.Time

	ready atomic.Bool
}

// logEvery is how often a repeated problem on a per-datagram or per-file
// path is logged at most; the rest are counted in the next line.
const logEvery = 10 * time.Second

// New creates an agent whose metrics are registered on reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Agent {
	self := NewSelfMetrics(reg)
	a := &Agent{
		cfg:       cfg,
		log:       log,
		self:      self,
		agg:       NewAggregator(cfg.Limits, cfg.NativeBuckets, self, reg),
		inflight:  NewInflightTable(cfg.InflightMax, cfg.LongRequestThreshold, cfg.InflightMaxAge, cfg.supersededGrace(), cfg.CheckPIDs),
		fps:       sqlfp.NewCache(cfg.SQLCacheSize),
		fpsCut:    sqlfp.NewTruncatedCache(max(cfg.SQLCacheSize/8, 16)),
		ring:      NewEventRing(cfg.EventsBuffer),
		traces:    newTracer(cfg.Traces, log),
		invalid:   throttle.New(logEvery),
		readErrs:  throttle.New(logEvery),
		spoolErrs: throttle.New(logEvery),
		now:       time.Now,
	}
	for _, k := range cfg.FPM.EventKinds() {
		self.events.WithLabelValues(k)
	}
	reg.MustRegister(&scrapeCollector{a: a})
	return a
}

// Events returns the recent events, newest first.
func (a *Agent) Events() []Event { return a.ring.Recent() }

// Inflight returns the requests in flight, longest running first.
func (a *Agent) Inflight() []InflightRequest { return a.inflight.Snapshot() }

// Ready reports whether the socket is being read.
func (a *Agent) Ready() bool { return a.ready.Load() }

// readerState is what one socket reader reuses from datagram to datagram.
type readerState struct {
	dec protocol.Decoder
	msg protocol.Message
	fps []sqlfp.Result
}

// Handle processes one datagram. It is safe to call from several readers,
// each with its own state, and never panics on what a sender can put in a
// datagram.
func (a *Agent) Handle(b []byte, st *readerState) {
	a.self.datagrams.Inc()
	a.self.bytes.Add(float64(len(b)))
	m := &st.msg
	if err := st.dec.Decode(b, m); err != nil {
		var de *protocol.DecodeError
		if !errors.As(err, &de) {
			de = &protocol.DecodeError{Reason: protocol.ReasonJSON, Detail: err.Error()}
		}
		a.self.invalidMessage(de.Type, de.Reason)
		if n, ok := a.invalid.Allow(); ok {
			a.log.Warn("rejected invalid datagram", "err", de, "bytes", len(b), "suppressed_since_last", n)
		}
		return
	}
	a.self.accepted[m.Type].Inc()
	now := a.now()
	if m.Dropped > 0 {
		a.self.phpSendFails.WithLabelValues(a.projectLabel(m.Project)).Add(float64(m.Dropped))
	}
	switch m.Type {
	case protocol.TypeStart:
		k := a.agg.ResolveEndpoint(m.Project, m.Endpoint, now)
		old, err := a.inflight.Start(m, k.endpoint, now)
		if err != nil {
			a.self.inflightFull.Inc()
		}
		a.abandon(old, AbandonSuperseded, now)
	case protocol.TypeProgress:
		endpoint := ""
		if m.Endpoint != "" {
			endpoint = a.agg.ResolveEndpoint(m.Project, m.Endpoint, now).endpoint
		}
		old, err := a.inflight.Progress(m, endpoint, now)
		if err != nil {
			a.self.inflightFull.Inc()
		}
		a.abandon(old, AbandonSuperseded, now)
	case protocol.TypeEnd:
		closed, old := a.inflight.End(m, now)
		a.abandon(old, AbandonSuperseded, now)
		if closed == nil {
			a.self.unmatchedEnds.Inc()
		}
		st.fps = st.fps[:0]
		for i := range m.SQL {
			c := a.fps
			if m.SQL[i].Cut {
				c = a.fpsCut
			}
			st.fps = append(st.fps, c.LookupString(m.SQL[i].Query))
		}
		if len(m.Truncated) > 0 {
			a.self.phpTruncated.WithLabelValues(a.projectLabel(m.Project)).Inc()
		}
		a.agg.ApplyEnd(m, st.fps, now)
		if a.traces.on {
			a.traceEnd(m, st.fps)
		}
	}
}

// projectLabel is the project label value for self metrics, bounded like the
// contract metrics.
func (a *Agent) projectLabel(p string) string {
	return a.agg.ResolveProject(p, a.now())
}

func (a *Agent) abandon(r *InflightRequest, reason string, now time.Time) {
	if r == nil {
		return
	}
	a.self.inflightEnded.WithLabelValues(reason).Inc()
	a.agg.Abandoned(endpointKey{r.Project, r.Endpoint}, now)
	a.emit(Event{Kind: EventAbandoned, Time: now, Reason: reason, Seconds: r.Age(now).Seconds(), Request: *r})
	if a.traces.on {
		a.traceAbandoned(r, reason, now)
	}
}

func (a *Agent) emit(e Event) {
	a.self.events.WithLabelValues(e.Kind).Inc()
	a.ring.Emit(e)
}

// Sweep runs the in-flight checks once.
func (a *Agent) Sweep() {
	now := a.now()
	abandoned, long := a.inflight.Sweep(now)
	for i := range abandoned {
		a.abandon(&abandoned[i].Request, abandoned[i].Reason, now)
	}
	for i := range long {
		a.emit(Event{Kind: EventLongRunning, Time: now, Seconds: long[i].Age(now).Seconds(), Request: long[i]})
	}
}

// Expire removes idle series once.
func (a *Agent) Expire() {
	now := a.now()
	a.agg.Expire(now.Add(-a.cfg.SeriesTTL), a.inflight.Counts(now))
}

// Rank re-ranks the top functions and queries once.
func (a *Agent) Rank() { a.agg.Rank() }

// RunBackground runs the periodic work until ctx ends: the in-flight sweep,
// ranking, expiry, and taking in the spool (at once, then every spool
// interval).
func (a *Agent) RunBackground(ctx context.Context) {
	var wg sync.WaitGroup
	if a.cfg.SpoolPath() != "" {
		wg.Go(func() { periodic.Run(ctx, a.cfg.SpoolInterval, a.takeSpoolLogged) })
	}
	wg.Go(func() { periodic.Every(ctx, a.cfg.SweepInterval, a.Sweep) })
	wg.Go(func() { periodic.Every(ctx, a.cfg.RankInterval, a.Rank) })
	wg.Go(func() { periodic.Every(ctx, min(a.cfg.SeriesTTL/4, time.Minute), a.Expire) })
	wg.Wait()
}

// takeSpoolLogged takes the spool in once, logging what it found.
func (a *Agent) takeSpoolLogged() {
	st, err := a.TakeSpool()
	switch {
	case err != nil:
		if n, ok := a.spoolErrs.Allow(); ok {
			a.log.Warn("cannot take in the spool", "err", err, "suppressed_since_last", n)
		}
	case st != (SpoolStats{}):
		a.log.Info("spool taken in", "dir", a.cfg.SpoolPath(), "replayed", st.Replayed, "skipped", st.Skipped, "invalid", st.Invalid,
			"unreadable", st.Unreadable, "expired", st.Expired, "evicted", st.Evicted)
	}
}

// scrapeCollector computes at scrape time the gauges that are a view of
// state rather than a count of events.
type scrapeCollector struct{ a *Agent }

var (
	inflightDesc = prometheus.NewDesc("bitville_php_requests_in_flight",
		"Requests started and not yet finished.", []string{"project", "endpoint"}, nil)
	longRunningDesc = prometheus.NewDesc("bitville_php_requests_long_running",
		"Requests in flight for longer than the long-request threshold.", []string{"project", "endpoint"}, nil)
	inflightEntriesDesc = prometheus.NewDesc("bitville_agent_inflight_requests",
		"Entries in the in-flight table.", nil, nil)
	seriesDesc = prometheus.NewDesc("bitville_agent_series",
		"Label values held by the aggregator, by label (and histograms held for the top functions and queries).", []string{"label"}, nil)
	fingerprintDesc = prometheus.NewDesc("bitville_agent_sql_fingerprints_total",
		"SQL texts fingerprinted, by cache result; fallback counts texts PostgreSQL's parser could not parse.", []string{"result"}, nil)
	fingerprintCacheDesc = prometheus.NewDesc("bitville_agent_sql_fingerprint_cache_entries",
		"Entries in the SQL fingerprint cache.", nil, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- inflightDesc
	ch <- longRunningDesc
	ch <- inflightEntriesDesc
	ch <- seriesDesc
	ch <- fingerprintDesc
	ch <- fingerprintCacheDesc
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	now := a.now()
	counts := a.inflight.Counts(now)
	for _, k := range a.agg.endpointKeys() {
		n := counts[k]
		delete(counts, k)
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(n.InFlight), k.project, k.endpoint)
		ch <- prometheus.MustNewConstMetric(longRunningDesc, prometheus.GaugeValue, float64(n.LongRunning), k.project, k.endpoint)
	}
	// Endpoints expired while their request ran cannot happen (Expire keeps
	// them), but a request whose endpoint series was never created can: a
	// progress without endpoint for a lost start. Show it rather than hide it.
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(inflightDesc, prometheus.GaugeValue, float64(n.InFlight), k.project, k.endpoint)
		ch <- prometheus.MustNewConstMetric(longRunningDesc, prometheus.GaugeValue, float64(n.LongRunning), k.project, k.endpoint)
	}
	ch <- prometheus.MustNewConstMetric(inflightEntriesDesc, prometheus.GaugeValue, float64(a.inflight.Len()))
	for label, n := range a.agg.SeriesCounts() {
		ch <- prometheus.MustNewConstMetric(seriesDesc, prometheus.GaugeValue, float64(n), label)
	}
	st, cut := a.fps.Stats(), a.fpsCut.Stats()
	ch <- prometheus.MustNewConstMetric(fingerprintDesc, prometheus.CounterValue, float64(st.Hits+cut.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(fingerprintDesc, prometheus.CounterValue, float64(st.Misses+cut.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(fingerprintDesc, prometheus.CounterValue, float64(st.Fallbacks), "fallback")
	ch <- prometheus.MustNewConstMetric(fingerprintDesc, prometheus.CounterValue, float64(cut.Misses), "truncated")
	ch <- prometheus.MustNewConstMetric(fingerprintCacheDesc, prometheus.GaugeValue, float64(st.Entries+cut.Entries))
}
