package rawtrace

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promtest"
)

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

	// A new process on the same directory, the old one abandoned (its
	// death would release the directory's lock).
	r1.senders[0].spool.lock.Close()
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
	// Clean up r1: its stop waits for the held push, which release lets return.
	stopped := make(chan struct{})
	go func() { r1.stop(); close(stopped) }()
	close(release)
	<-stopped
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
	if r.Healthy() {
		t.Error("Healthy() with the only sink's breaker open: got true; want false")
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
	if !r.Healthy() {
		t.Error("Healthy() once the breaker closed: got false; want true")
	}
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
	waitFor(t, "the batch refused", func() bool {
		return metric(t, r.reg, `bitville_events_dropped_total{reason=`+reasonRejected+`,sink=loki}`) == 3
	})
	waitFor(t, "an empty queue", func() bool { return metric(t, r.reg, "bitville_events_queued{sink=loki}") == 0 })
	if got := metric(t, r.reg, "bitville_events_breaker_open{sink=loki}"); got != 0 {
		t.Errorf("breaker_open = %v; want 0: a refusal is an answer", got)
	}
}

func TestSelfMetrics(t *testing.T) {
	cfg := testConfig(t)
	sink := newFakeSink("loki")
	r := start(t, cfg, sink)
	for i := range 3 {
		r.Emit(testEvent(fmt.Sprint("m", i), PrioritySlow))
	}
	waitFor(t, "the events delivered", func() bool { d, _ := sink.delivered(); return d == 3 })
	r.stop()

	got := promtest.Series(t, r.reg, "bitville_events_")
	delete(got, "bitville_events_push_duration_seconds_sum{sink=loki}")
	want := map[string]float64{
		"bitville_events_total{kind=request,priority=error}":            0,
		"bitville_events_total{kind=request,priority=slow}":             3,
		"bitville_events_total{kind=request,priority=sampled}":          0,
		"bitville_events_dropped_total{reason=rate_limited,sink=}":      0,
		"bitville_events_dropped_total{reason=too_large,sink=}":         0,
		"bitville_events_dropped_total{reason=invalid,sink=}":           0,
		"bitville_events_dropped_total{reason=spool_full,sink=loki}":    0,
		"bitville_events_dropped_total{reason=rejected,sink=loki}":      0,
		"bitville_events_dropped_total{reason=spool_corrupt,sink=loki}": 0,
		"bitville_events_dropped_total{reason=too_large,sink=loki}":     0,
		"bitville_events_queued{sink=loki}":                             0,
		"bitville_events_spool_bytes{sink=loki}":                        0,
		"bitville_events_breaker_open{sink=loki}":                       0,
		"bitville_events_sent_total{sink=loki}":                         3,
		"bitville_events_push_failures_total{sink=loki}":                0,
		"bitville_events_push_duration_seconds_count{sink=loki}":        float64(len(sink.callTimes())),
	}
	if !maps.Equal(got, want) {
		t.Errorf("self-metrics\n got %v\nwant %v", got, want)
	}
}

func TestSpoolDirIsLocked(t *testing.T) {
	cfg := testConfig(t)
	r := start(t, cfg, newFakeSink("loki"))
	if _, err := NewWithSinks(cfg, Options{}, prometheus.NewRegistry(), newFakeSink("loki")); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second pipeline on the same spool: err %v; want in use", err)
	}
	r.stop()
	p, err := NewWithSinks(cfg, Options{}, prometheus.NewRegistry(), newFakeSink("loki"))
	if err != nil {
		t.Fatalf("after a clean stop: %v", err)
	}
	p.closeSpools()
}

// TestPartialBatch: a batch the sink took but for some events counts those
// as dropped by their reason, the rest as sent, and is not sent again.
func TestPartialBatch(t *testing.T) {
	s := newFakeSink("gelf")
	s.setFail(&PartialError{TooLarge: 1, Rejected: 2, Err: errors.New("HTTP 400")})
	cfg := testConfig(t)
	cfg.BatchSize, cfg.BatchWait = 5, time.Minute // one batch of all five, sent when full
	r := start(t, cfg, s)
	for i := range 5 {
		r.Emit(testEvent(fmt.Sprint("p", i), PrioritySlow))
	}
	waitFor(t, "the batch", func() bool { return metric(t, r.reg, "bitville_events_queued{sink=gelf}") == 0 })
	for series, want := range map[string]float64{
		"bitville_events_sent_total{sink=gelf}":                     2,
		"bitville_events_dropped_total{reason=too_large,sink=gelf}": 1,
		"bitville_events_dropped_total{reason=rejected,sink=gelf}":  2,
		"bitville_events_push_failures_total{sink=gelf}":            0,
	} {
		if got := metric(t, r.reg, series); got != want {
			t.Errorf("%s = %v; want %v", series, got, want)
		}
	}
	if n := len(s.callTimes()); n != 1 {
		t.Errorf("%d pushes; want 1 (a partial answer is not retried)", n)
	}
}
