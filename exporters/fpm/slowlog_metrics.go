package fpm

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
)

// Reasons of bitville_fpm_slowlog_errors_total.
const (
	slowlogErrOpen      = "open"         // the file cannot be opened, stat'ed or read
	slowlogErrInvalid   = "invalid_line" // a line that fits no entry
	slowlogErrTruncated = "truncated"    // an entry lost frames to the agent's bounds
)

// slowlogMetrics counts slowlog entries by pool and top frame function,
// within bounds. Safe for concurrent use.
type slowlogMetrics struct {
	entries *prometheus.CounterVec // pool
	frames  *prometheus.CounterVec // pool, function
	errors  *prometheus.CounterVec // reason

	// fnOverflow and fnExpired count function label values past the
	// limit and idle ones removed.
	fnOverflow, fnExpired labelset.Counter

	mu    sync.Mutex
	pools *labelset.Set[string, *slowlogPool] // guarded by mu
}

// slowlogPool is one pool label value: its entry counter and its function
// label values.
type slowlogPool struct {
	entries   prometheus.Counter
	functions *labelset.Set[string, prometheus.Counter]
}

// newSlowlogMetrics creates the slowlog counters. poolOverflow,
// fnOverflow and fnExpired (each may be nil) count pool and function label
// values past their limits and idle function values removed.
func newSlowlogMetrics(poolOverflow, fnOverflow, fnExpired labelset.Counter) *slowlogMetrics {
	s := &slowlogMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_slowlog_entries_total",
			Help: "Entries php-fpm wrote to its slowlog (requests past request_slowlog_timeout), by pool.",
		}, []string{"pool"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_slowlog_frames_total",
			Help: "Slowlog entries by their innermost frame's function: what slow requests were doing.",
		}, []string{"pool", "function"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_slowlog_errors_total",
			Help: "Slowlog problems, by reason: open (cannot open or read the file), invalid_line, truncated (entry past the agent's bounds).",
		}, []string{"reason"}),
		fnOverflow: fnOverflow,
		fnExpired:  fnExpired,
	}
	// Pools are never expired: a pool is a piece of configuration, and its
	// entry counter is created at zero as soon as a status page names it.
	s.pools = labelset.New(labelset.Options[string, *slowlogPool]{
		Limit:      slowlogMaxPools,
		Overflow:   labelset.Other,
		New:        s.newPool,
		Overflowed: poolOverflow,
	})
	for _, r := range []string{slowlogErrOpen, slowlogErrInvalid, slowlogErrTruncated} {
		s.errors.WithLabelValues(r)
	}
	return s
}

// newPool creates the entry counter of a pool label value, at zero, and
// its bounded function dimension.
func (s *slowlogMetrics) newPool(pool string) *slowlogPool {
	return &slowlogPool{
		entries: s.entries.WithLabelValues(pool),
		functions: labelset.New(labelset.Options[string, prometheus.Counter]{
			Limit:      slowlogMaxFunctions,
			Overflow:   labelset.Other,
			New:        func(fn string) prometheus.Counter { return s.frames.WithLabelValues(pool, fn) },
			Delete:     func(fn string, _ prometheus.Counter) { s.frames.DeleteLabelValues(pool, fn) },
			Overflowed: s.fnOverflow,
			Expired:    s.fnExpired,
		}),
	}
}

// describe and collect make the slowlog counters part of the fpm
// collector.
func (s *slowlogMetrics) describe(ch chan<- *prometheus.Desc) {
	s.entries.Describe(ch)
	s.frames.Describe(ch)
	s.errors.Describe(ch)
}

func (s *slowlogMetrics) collect(ch chan<- prometheus.Metric) {
	s.entries.Collect(ch)
	s.frames.Collect(ch)
	s.errors.Collect(ch)
}

// pool returns the label value of name and its state, creating the entry
// counter at zero. Called with s.mu held.
func (s *slowlogMetrics) pool(name string, now time.Time) (string, *slowlogPool) {
	name = labelset.Truncate(name, maxPoolLabel)
	if name == "" {
		name = "unknown"
	}
	return s.pools.Get(name, now)
}

// knownPool creates the entry counter of a pool at zero, so that the first
// slowlog entry is an increase Prometheus can see.
func (s *slowlogMetrics) knownPool(name string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool(name, now)
}

// observe counts e and returns its pool label value.
func (s *slowlogMetrics) observe(e *SlowlogEntry, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	pool, sp := s.pool(e.Pool, now)
	sp.entries.Inc()
	_, frames := sp.functions.Get(labelset.Truncate(e.TopFunction(), 200), now)
	frames.Inc()
	return pool
}

// expire removes function series not seen since before.
func (s *slowlogMetrics) expire(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.pools.All() {
		sp.functions.Expire(before, nil)
	}
}
