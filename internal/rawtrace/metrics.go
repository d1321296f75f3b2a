package rawtrace

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
)

// Reasons of bitville_events_dropped_total. rate_limited, too_large and
// invalid happen in Emit, before any sink, and carry sink="".
const (
	reasonRateLimited  = "rate_limited"  // the project's token bucket was empty for the event's priority
	reasonTooLarge     = "too_large"     // the line is longer than events.max-line-bytes
	reasonInvalid      = "invalid"       // the line is not JSON: a producer's bug, which no receiver would take either
	reasonSpoolFull    = "spool_full"    // evicted to keep the spool under events.spool-max-bytes, or the spool could not be written
	reasonRejected     = "rejected"      // the receiver refused the batch for good (a PermanentError)
	reasonSpoolCorrupt = "spool_corrupt" // a record of the spool was torn or damaged: one count a damaged stretch
)

var sinkReasons = []string{reasonSpoolFull, reasonRejected, reasonSpoolCorrupt, reasonTooLarge}

// eventKinds bounds the kind label of bitville_events_total: the kinds of
// docs/raw-traces.md are far fewer, and a producer inventing kinds is
// counted under "other" past this.
const eventKinds = 32

// metrics are the self-metrics of a Pipeline.
type metrics struct {
	events       *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	queued       *prometheus.GaugeVec
	spoolBytes   *prometheus.GaugeVec
	breakerOpen  *prometheus.GaugeVec
	sent         *prometheus.CounterVec
	pushFailures *prometheus.CounterVec
	pushDuration *prometheus.HistogramVec

	rateLimited, tooLarge, invalid prometheus.Counter

	mu    sync.Mutex // guards kinds
	kinds *labelset.Set[string, *[numPriorities]prometheus.Counter]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_events_total",
			Help: "Raw-trace events accepted for delivery, by kind and priority.",
		}, []string{"kind", "priority"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_events_dropped_total",
			Help: "Raw-trace events dropped, by sink (empty: before any sink) and reason.",
		}, []string{"sink", "reason"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bitville_events_queued",
			Help: "Raw-trace events in the sink's spool, not yet delivered.",
		}, []string{"sink"}),
		spoolBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bitville_events_spool_bytes",
			Help: "Size of the sink's spool files.",
		}, []string{"sink"}),
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bitville_events_breaker_open",
			Help: "1 while the sink's circuit breaker is open (no push is tried until the probe), else 0.",
		}, []string{"sink"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_events_sent_total",
			Help: "Raw-trace events the sink's receiver took.",
		}, []string{"sink"}),
		pushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_events_push_failures_total",
			Help: "Pushes to the sink that failed and will be retried.",
		}, []string{"sink"}),
		pushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bitville_events_push_duration_seconds",
			Help:    "Duration of pushes to the sink, failed ones included.",
			Buckets: prometheus.DefBuckets,
		}, []string{"sink"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.dropped, m.queued, m.spoolBytes, m.breakerOpen, m.sent, m.pushFailures, m.pushDuration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("cannot register the raw-trace self-metrics: %w", err)
		}
	}
	m.rateLimited = m.dropped.WithLabelValues("", reasonRateLimited)
	m.tooLarge = m.dropped.WithLabelValues("", reasonTooLarge)
	m.invalid = m.dropped.WithLabelValues("", reasonInvalid)
	m.kinds = labelset.New(labelset.Options[string, *[numPriorities]prometheus.Counter]{
		Limit:    eventKinds,
		Overflow: labelset.Other,
		New: func(kind string) *[numPriorities]prometheus.Counter {
			var cs [numPriorities]prometheus.Counter
			for p := range numPriorities {
				cs[p] = m.events.WithLabelValues(kind, p.String())
			}
			return &cs
		},
	})
	return m, nil
}

// accepted counts an event Emit took.
func (m *metrics) accepted(kind string, p Priority) {
	if p >= numPriorities {
		p = PrioritySampled // clamped the same way by Emit
	}
	m.mu.Lock()
	_, cs := m.kinds.Get(kind, time.Time{})
	m.mu.Unlock()
	cs[p].Inc()
}

// sinkMetrics are the series of one sink, resolved once.
type sinkMetrics struct {
	queued, spoolBytes, breakerOpen prometheus.Gauge
	sent, pushFailures              prometheus.Counter
	pushDuration                    prometheus.Observer
	spoolFull, rejected, corrupt    prometheus.Counter
	tooLarge                        prometheus.Counter // events a sink could not carry at all (GELF over UDP)
}

func (m *metrics) forSink(name string) sinkMetrics {
	for _, r := range sinkReasons {
		m.dropped.WithLabelValues(name, r) // present at 0 from the start
	}
	return sinkMetrics{
		queued:       m.queued.WithLabelValues(name),
		spoolBytes:   m.spoolBytes.WithLabelValues(name),
		breakerOpen:  m.breakerOpen.WithLabelValues(name),
		sent:         m.sent.WithLabelValues(name),
		pushFailures: m.pushFailures.WithLabelValues(name),
		pushDuration: m.pushDuration.WithLabelValues(name),
		spoolFull:    m.dropped.WithLabelValues(name, reasonSpoolFull),
		rejected:     m.dropped.WithLabelValues(name, reasonRejected),
		corrupt:      m.dropped.WithLabelValues(name, reasonSpoolCorrupt),
		tooLarge:     m.dropped.WithLabelValues(name, reasonTooLarge),
	}
}
