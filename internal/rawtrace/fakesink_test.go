package rawtrace

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/promtest"
)

// fakeSink records every Send and every event it took, by the id in the
// event's line. While fail is set, Send returns it; while hold is set, Send
// takes the batch and then waits for hold to be closed and returns
// holdErr (a push the receiver got but whose answer never arrived).
type fakeSink struct {
	name string

	mu        sync.Mutex
	fail      error
	hold      chan struct{}
	holdErr   error
	calls     []time.Time
	got       map[string]int
	lastBatch []string
	closed    bool
}

func newFakeSink(name string) *fakeSink { return &fakeSink{name: name, got: map[string]int{}} }

func (f *fakeSink) Name() string { return f.name }

func (f *fakeSink) Send(ctx context.Context, batch []Event) error {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	if f.fail != nil {
		err := f.fail
		f.mu.Unlock()
		return err
	}
	f.lastBatch = f.lastBatch[:0]
	for _, e := range batch {
		id := lineID(e)
		f.got[id]++
		f.lastBatch = append(f.lastBatch, id)
	}
	hold, holdErr := f.hold, f.holdErr
	f.mu.Unlock()
	if hold != nil {
		<-hold
		return holdErr
	}
	return nil
}

func (f *fakeSink) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeSink) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeSink) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

// delivered returns how many distinct ids were taken and the ids taken
// more than once.
func (f *fakeSink) delivered() (distinct int, dups []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, n := range f.got {
		if n > 1 {
			dups = append(dups, id)
		}
	}
	return len(f.got), dups
}

func lineID(e Event) string {
	var l struct{ ID string }
	if err := json.Unmarshal(e.Line, &l); err != nil {
		return "unparsable"
	}
	return l.ID
}

func testEvent(id string, p Priority) Event {
	return Event{
		Kind: "request", Level: LevelInfo, Priority: p, Project: "shop",
		Time: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC), Summary: "GET /orders/{id} 200 " + id,
		IDs:  IDs{RequestID: id},
		Line: json.RawMessage(fmt.Sprintf(`{"kind":"request","id":%q,"project":"shop"}`, id)),
	}
}

// testConfig is the flag defaults with quick timings and a limit no test
// reaches unless it means to.
func testConfig(t testing.TB) Config {
	var c Config
	flagdefaults.Must(&c)
	c.SpoolDir = t.TempDir()
	c.BatchWait = 5 * time.Millisecond
	c.Timeout = 5 * time.Second
	c.BackoffMin = time.Millisecond
	c.BackoffMax = 5 * time.Millisecond
	c.BreakerProbe = 20 * time.Millisecond
	c.RateLimit = 1e6
	c.RateBurst = 1e6
	return c
}

// running is a Pipeline whose Run goroutine the test can stop.
type running struct {
	*Pipeline
	reg  *prometheus.Registry
	stop func() // the clean stop: Run returns, spools saved
}

func start(t *testing.T, cfg Config, sinks ...Sink) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{Job: "test"}, reg, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	r := &running{Pipeline: p, reg: reg, stop: sync.OnceFunc(p.Start())}
	t.Cleanup(r.stop)
	return r
}

// metric returns the value of one series of reg, as promtest names it
// ("name{label=value,...}", labels sorted); a series it does not hold
// fails the test, so that a misspelt name cannot read as 0.
func metric(t *testing.T, reg prometheus.Gatherer, series string) float64 {
	t.Helper()
	v, ok := promtest.Series(t, reg, "bitville_events_")[series]
	if !ok {
		t.Fatalf("no series %s", series)
	}
	return v
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
