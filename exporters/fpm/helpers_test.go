package fpm

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promtest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clock is a settable time source for the monitor.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// peer stands for the agent on the other side of the seam: it records the
// events (the Sink) and answers the Lookup from the requests it was told
// are in flight.
type peer struct {
	mu       sync.Mutex
	events   []Event
	inflight map[int]Request
}

func (p *peer) emit(e Event) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *peer) lookup(pid int) (Request, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.inflight[pid]
	return r, ok
}

func (p *peer) start(r Request) {
	p.mu.Lock()
	p.inflight[r.PID] = r
	p.mu.Unlock()
}

// Events returns the events of kind, newest first.
func (p *peer) Events(kind string) []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Event
	for i := len(p.events) - 1; i >= 0; i-- {
		if p.events[i].Kind == kind {
			out = append(out, p.events[i])
		}
	}
	return out
}

// newTestMonitor returns a monitor on its own registry, with the agent's
// label counters registered there too, and the peer its events go to.
func newTestMonitor(t testing.TB, mutate func(*Options)) (*Monitor, *prometheus.Registry, *peer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	overflow := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitville_agent_series_overflow_total", Help: "x"}, []string{"label"})
	expired := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitville_agent_series_expired_total", Help: "x"}, []string{"label"})
	reg.MustRegister(overflow, expired)
	p := &peer{inflight: make(map[int]Request)}
	o := Options{
		Config:         DefaultConfig(),
		LongRequest:    10 * time.Second,
		SeriesTTL:      30 * time.Minute,
		Sink:           p.emit,
		Lookup:         p.lookup,
		SeriesOverflow: overflow,
		SeriesExpired:  expired,
	}
	if mutate != nil {
		mutate(&o)
	}
	if err := o.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(o, reg), reg, p
}

// series is promtest.Series.
var series = promtest.Series

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
