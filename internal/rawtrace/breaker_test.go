package rawtrace

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	b := newBreaker(3, time.Minute)
	for i := range 2 {
		if b.failure(now) || b.wait(now) != 0 {
			t.Fatalf("failure %d opened the breaker; want it closed until 3", i+1)
		}
	}
	if !b.failure(now) {
		t.Fatal("the third failure did not open the breaker")
	}
	if got := b.wait(now.Add(20 * time.Second)); got != 40*time.Second {
		t.Errorf("wait 20s after opening = %s; want 40s", got)
	}
	if got := b.wait(now.Add(time.Minute)); got != 0 {
		t.Errorf("wait at the probe = %s; want 0", got)
	}
	now = now.Add(time.Minute)
	if b.failure(now) {
		t.Error("a failed probe reported opening again; want it open all along")
	}
	if got := b.wait(now); got != time.Minute {
		t.Errorf("wait after a failed probe = %s; want another minute", got)
	}
	if !b.success() {
		t.Error("a successful probe did not report closing")
	}
	if b.wait(now) != 0 || b.success() {
		t.Error("the breaker is not closed after a success")
	}
	if b.failure(now) {
		t.Error("one failure after closing opened it; want the count started afresh")
	}
}

func TestBackoffStaysInItsBounds(t *testing.T) {
	lo, hi := 500*time.Millisecond, 30*time.Second
	for n := 1; n < 20; n++ {
		ceil := min(hi, lo<<(n-1))
		for range 50 {
			if d := backoff(lo, hi, n); d < lo || d > ceil {
				t.Fatalf("backoff after %d failures = %s; want within [%s, %s]", n, d, lo, ceil)
			}
		}
	}
}
