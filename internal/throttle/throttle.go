// Package throttle keeps logs of repeated problems readable: on the
// per-datagram and per-read paths a problem can happen thousands of times a
// second, so each kind of log line is let through at most once an interval
// and says how many were held back since the last one (STYLE.md, "count and
// throttle; never log each event").
package throttle

import (
	"sync"
	"time"
)

// Throttle lets one event through per interval and counts the rest. Safe
// for concurrent use.
type Throttle struct {
	mu         sync.Mutex
	every      time.Duration
	last       time.Time
	suppressed int
}

// New returns a throttle that lets one event through every interval.
func New(every time.Duration) *Throttle { return &Throttle{every: every} }

// Allow reports whether to log now, and how many events were suppressed
// since the last time it did.
func (t *Throttle) Allow() (suppressed int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.last) < t.every {
		t.suppressed++
		return 0, false
	}
	t.last = now
	n := t.suppressed
	t.suppressed = 0
	return n, true
}
