package rawtrace

import (
	"fmt"
	"testing"
	"time"
)

func TestRateLimiterLeavesTheLastSharesToHigherPriorities(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	r := newRateLimiter(10, 100)
	drain := func(p Priority) int {
		n := 0
		for r.allow("shop", p, now) {
			n++
		}
		return n
	}
	// A full bucket of 100: sampled events while 50 are left, slow ones
	// while 25 are, errors to the last token.
	for _, c := range []struct {
		p    Priority
		want int
	}{{PrioritySampled, 51}, {PrioritySlow, 25}, {PriorityError, 24}, {PrioritySampled, 0}} {
		if got := drain(c.p); got != c.want {
			t.Errorf("%s events let through = %d; want %d", c.p, got, c.want)
		}
	}
	now = now.Add(time.Second) // 10 tokens back
	if got := drain(PriorityError); got != 10 {
		t.Errorf("error events let through a second later = %d; want 10", got)
	}
	if !r.allow("blog", PrioritySampled, now) {
		t.Error("another project shares the bucket of shop; want one of its own")
	}
}

func TestRateLimiterBoundsItsProjects(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	r := newRateLimiter(1, 1)
	for i := range rateProjects {
		if !r.allow(fmt.Sprint("p", i), PriorityError, now) {
			t.Fatalf("project %d refused its first event", i)
		}
	}
	if !r.allow("late1", PriorityError, now) {
		t.Fatal("the first project past the limit was refused")
	}
	if r.allow("late2", PriorityError, now) {
		t.Error("the second project past the limit had a bucket of its own; want the shared one, empty")
	}
	if got := r.buckets.Len(); got != rateProjects+1 {
		t.Errorf("%d buckets; want %d", got, rateProjects+1)
	}
	// Idle buckets are full again after a refill period: forgotten.
	now = now.Add(time.Hour)
	r.allow("p0", PriorityError, now)
	if got := r.buckets.Len(); got != 1 {
		t.Errorf("%d buckets an hour later; want 1", got)
	}
}

// TestAdmitAsksWithoutTaking: Admit says what Emit would do and leaves the
// token; a refusal is counted as a rate-limited drop.
func TestAdmitAsksWithoutTaking(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit = 0.001 // no refill within the test
	cfg.RateBurst = 4
	p := start(t, cfg, newFakeSink("loki"))
	for i := 0; i < 10; i++ {
		if !p.Admit("shop", PriorityError) {
			t.Fatalf("Admit refused question %d with a full bucket", i)
		}
	}
	// Slow events need a quarter of the burst, one token here: the whole
	// burst passes, each admitted event taking its token when emitted.
	emitted := 0
	for i := 0; p.Admit("shop", PrioritySlow) && i < 10; i++ {
		p.Emit(testEvent(fmt.Sprint("s", i), PrioritySlow))
		emitted++
	}
	if emitted != 4 {
		t.Errorf("%d slow events admitted and emitted; want 4 (the whole burst)", emitted)
	}
	if p.Admit("shop", PriorityError) {
		t.Error("Admit let an error event through an empty bucket")
	}
	if got := metric(t, p.reg, "bitville_events_dropped_total{reason=rate_limited,sink=}"); got != 2 {
		t.Errorf("rate_limited = %v; want 2 (the two refused questions)", got)
	}
	if got := metric(t, p.reg, "bitville_events_total{kind=request,priority=slow}"); got != 4 {
		t.Errorf("accepted = %v; want 4", got)
	}
	if Discard.Admit("shop", PriorityError) {
		t.Error("Discard admitted an event")
	}
}
