package rawtrace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, cfg Config, sinks ...Sink) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{Job: "test"}, reg, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Pipeline: p, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() { p.Run(ctx); close(r.done) }()
	t.Cleanup(r.stop)
	return r
}

// stop is the clean stop: cancel and wait for Run to return.
func (r *running) stop() {
	r.cancel()
	<-r.done
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

func TestOutageDeliversEverythingOnce(t *testing.T) {
	cfg := testConfig(t)
	sink := newFakeSink("loki")
	sink.setFail(errors.New("connection refused"))
	r := start(t, cfg, sink)

	const n = 400
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			r.Emit(testEvent(fmt.Sprint("o", i), Priority(i%3)))
			if i == n/2 {
				sink.setFail(nil)
			}
			time.Sleep(200 * time.Microsecond)
		}
	})
	wg.Wait()
	waitFor(t, "every event delivered", func() bool { d, _ := sink.delivered(); return d == n })
	waitFor(t, "an empty queue", func() bool { return metric(t, r.reg, "bitville_events_queued{sink=loki}") == 0 })
	r.stop()
	if _, dups := sink.delivered(); len(dups) > 0 {
		t.Errorf("delivered more than once: %v", dups)
	}
	if got := metric(t, r.reg, "bitville_events_sent_total{sink=loki}"); got != n {
		t.Errorf("sent_total = %v; want %d", got, n)
	}
	if got := metric(t, r.reg, "bitville_events_push_failures_total{sink=loki}"); got < 1 {
		t.Errorf("push_failures_total = %v; want at least 1", got)
	}
	if !sink.closed {
		t.Error("the sink was not closed at stop")
	}
}

func TestRestartAfterCleanStopSendsNothingTwice(t *testing.T) {
	cfg := testConfig(t)
	sink := newFakeSink("loki")
	r := start(t, cfg, sink)
	for i := range 20 {
		r.Emit(testEvent(fmt.Sprint("a", i), PrioritySlow))
	}
	waitFor(t, "the first events delivered", func() bool { d, _ := sink.delivered(); return d == 20 })
	sink.setFail(errors.New("503"))
	for i := range 30 {
		r.Emit(testEvent(fmt.Sprint("b", i), Priority(i%3)))
	}
	waitFor(t, "a failed push", func() bool { return metric(t, r.reg, "bitville_events_push_failures_total{sink=loki}") > 0 })
	r.stop()

	sink.setFail(nil)
	r2 := start(t, cfg, sink)
	if got := metric(t, r2.reg, "bitville_events_queued{sink=loki}"); got != 30 {
		t.Errorf("queued after the restart = %v; want 30", got)
	}
	waitFor(t, "the spooled events delivered", func() bool { d, _ := sink.delivered(); return d == 50 })
	r2.stop()
	if _, dups := sink.delivered(); len(dups) > 0 {
		t.Errorf("delivered more than once: %v", dups)
	}
}

func TestKillSendsAtMostTheLastBatchAgain(t *testing.T) {
	cfg := testConfig(t)
	cfg.BatchSize = 8
	sink := newFakeSink("loki")
	r1 := start(t, cfg, sink)
	for i := range 20 {
		r1.Emit(testEvent(fmt.Sprint("a", i), PrioritySampled))
	}
	waitFor(t, "the first events delivered", func() bool { d, _ := sink.delivered(); return d == 20 })

	// The next push reaches the receiver, but the process dies before
	// the answer: the batch is never acknowledged.
	release := make(chan struct{})
	sink.mu.Lock()
	sink.hold, sink.holdErr = release, errors.New("killed")
	sink.mu.Unlock()
	for i := range 10 {
		r1.Emit(testEvent(fmt.Sprint("b", i), PrioritySampled))
	}
	waitFor(t, "the push that never returns", func() bool { d, _ := sink.delivered(); return d > 20 })
	sink.mu.Lock()
	sink.hold = nil
	inFlight := append([]string(nil), sink.lastBatch...)
	sink.mu.Unlock()

	// A new process on the same directory, the old one abandoned.
	r2 := start(t, cfg, sink)
	for i := range 10 {
		r2.Emit(testEvent(fmt.Sprint("c", i), PrioritySampled))
	}
	waitFor(t, "every event delivered", func() bool { d, _ := sink.delivered(); return d == 40 })
	r2.stop()
	_, dups := sink.delivered()
	t.Logf("sent again after the kill: %v (the batch in flight: %v)", dups, inFlight)
	if len(dups) > cfg.BatchSize {
		t.Errorf("%d events delivered twice; want at most one batch (%d): %v", len(dups), cfg.BatchSize, dups)
	}
	for _, id := range dups {
		if !contains(inFlight, id) {
			t.Errorf("%s delivered twice but was not in the unacknowledged batch %v", id, inFlight)
		}
	}
	r1.cancel()
	close(release)
	<-r1.done
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func TestBreakerStopsPushesUntilTheProbe(t *testing.T) {
	cfg := testConfig(t)
	cfg.BreakerProbe = 300 * time.Millisecond
	sink := newFakeSink("gelf")
	sink.setFail(errors.New("timeout"))
	r := start(t, cfg, sink)
	r.Emit(testEvent("x", PriorityError))

	waitFor(t, "two probes", func() bool { return len(sink.callTimes()) >= cfg.BreakerFailures+2 })
	if got := metric(t, r.reg, "bitville_events_breaker_open{sink=gelf}"); got != 1 {
		t.Errorf("breaker_open = %v; want 1", got)
	}
	calls := sink.callTimes()
	for i := cfg.BreakerFailures; i < cfg.BreakerFailures+2; i++ {
		if gap := calls[i].Sub(calls[i-1]); gap < cfg.BreakerProbe {
			t.Errorf("push %d came %s after the one before; want no push for the probe period %s", i+1, gap, cfg.BreakerProbe)
		}
	}
	sink.setFail(nil)
	waitFor(t, "the event delivered", func() bool { d, _ := sink.delivered(); return d == 1 })
	waitFor(t, "the breaker closed", func() bool { return metric(t, r.reg, "bitville_events_breaker_open{sink=gelf}") == 0 })
	r.stop()
	if got, want := metric(t, r.reg, "bitville_events_push_failures_total{sink=gelf}"), float64(len(sink.callTimes())-1); got != want {
		t.Errorf("push_failures_total = %v; want %v (every push but the last)", got, want)
	}
}

func TestPermanentErrorDropsTheBatch(t *testing.T) {
	cfg := testConfig(t)
	sink := newFakeSink("loki")
	sink.setFail(&PermanentError{Err: errors.New("400: entry too far behind")})
	r := start(t, cfg, sink)
	for i := range 3 {
		r.Emit(testEvent(fmt.Sprint("r", i), PriorityError))
	}
	waitFor(t, "the batch refused", func() bool { return metric(t, r.reg, `bitville_events_dropped_total{reason=`+reasonRejected+`,sink=loki}`) == 3 })
	waitFor(t, "an empty queue", func() bool { return metric(t, r.reg, "bitville_events_queued{sink=loki}") == 0 })
	if got := metric(t, r.reg, "bitville_events_breaker_open{sink=loki}"); got != 0 {
		t.Errorf("breaker_open = %v; want 0: a refusal is an answer", got)
	}
}

func TestEmitDropsWhatCannotBeKept(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxLineBytes = 1 << 10
	sink := newFakeSink("loki")
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{}, reg, sink)
	if err != nil {
		t.Fatal(err)
	}
	big := testEvent("big", PriorityError)
	big.Line = json.RawMessage(fmt.Sprintf(`{"id":"big","pad":%q}`, make([]byte, 2<<10)))
	p.Emit(big)
	bad := testEvent("bad", PriorityError)
	bad.Line = json.RawMessage(`{"id":`)
	p.Emit(bad)
	p.Emit(testEvent("ok", PriorityError))

	for _, c := range []struct {
		reason string
		want   float64
	}{{reasonTooLarge, 1}, {reasonInvalid, 1}, {reasonRateLimited, 0}} {
		if got := metric(t, reg, `bitville_events_dropped_total{reason=`+c.reason+`,sink=}`); got != c.want {
			t.Errorf("dropped_total{reason=%q} = %v; want %v", c.reason, got, c.want)
		}
	}
	if got := metric(t, reg, "bitville_events_total{kind=request,priority=error}"); got != 1 {
		t.Errorf("events_total{kind=request,priority=error} = %v; want 1", got)
	}
	if got := metric(t, reg, "bitville_events_queued{sink=loki}"); got != 1 {
		t.Errorf("queued = %v; want 1", got)
	}
	p.closeSpools()
}

func TestKindsAreBounded(t *testing.T) {
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{}, reg, newFakeSink("loki"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.closeSpools()
	for i := range eventKinds + 10 {
		e := testEvent(fmt.Sprint("k", i), PrioritySampled)
		e.Kind = fmt.Sprint("kind", i)
		p.Emit(e)
	}
	if got := metric(t, reg, "bitville_events_total{kind=other,priority=sampled}"); got != 10 {
		t.Errorf("events_total{kind=other} = %v; want 10", got)
	}
	n := 0
	for k := range promtest.Series(t, reg, "bitville_events_total") {
		if strings.HasPrefix(k, "bitville_events_total{") {
			n++
		}
	}
	if got, want := n, (eventKinds+1)*int(numPriorities); got != want {
		t.Errorf("events_total has %d series; want %d", got, want)
	}
}

func TestRateLimitKeepsErrorsFirst(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit = 1
	cfg.RateBurst = 100
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{Now: func() time.Time { return now }}, reg, newFakeSink("loki"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.closeSpools()
	const each = 100
	for i := range each {
		for prio := range numPriorities {
			p.Emit(testEvent(fmt.Sprint(prio, "-", i), prio))
		}
	}
	got := map[Priority]float64{}
	var total float64
	for prio := range numPriorities {
		got[prio] = metric(t, reg, "bitville_events_total{kind=request,priority="+prio.String()+"}")
		total += got[prio]
	}
	if !(got[PriorityError] > got[PrioritySlow] && got[PrioritySlow] > got[PrioritySampled]) {
		t.Errorf("accepted by priority %v; want error > slow > sampled", got)
	}
	if total != float64(cfg.RateBurst) {
		t.Errorf("accepted %v in one instant; want the burst %d", total, cfg.RateBurst)
	}
	if d := metric(t, reg, `bitville_events_dropped_total{reason=`+reasonRateLimited+`,sink=}`); d != 3*each-total {
		t.Errorf("rate_limited = %v; want %v", d, 3*each-total)
	}
	// Another project has a bucket of its own.
	other := testEvent("other", PrioritySampled)
	other.Project = "blog"
	p.Emit(other)
	if d := metric(t, reg, `bitville_events_dropped_total{reason=`+reasonRateLimited+`,sink=}`); d != 3*each-total {
		t.Errorf("an event of another project was rate limited")
	}
}

func BenchmarkEmit(b *testing.B) {
	cfg := testConfig(b)
	p, err := NewWithSinks(cfg, Options{}, prometheus.NewRegistry(), newFakeSink("loki"))
	if err != nil {
		b.Fatal(err)
	}
	defer p.closeSpools()
	e := testEvent("bench", PrioritySlow)
	e.Line = json.RawMessage(fmt.Sprintf(`{"kind":"request","id":"bench","sql":%q}`, make([]byte, 1000)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.Emit(e)
	}
}
