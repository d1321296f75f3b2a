package rawtrace

import "time"

// breaker is the circuit breaker in front of one sink. While closed, every
// failed push is retried after a backoff; after `failures` consecutive
// failures it opens, and no push at all is tried until `probe` has passed
// (a receiver that is down is not hammered, and a sender stuck in
// connection timeouts does not hold a goroutine busy). Then exactly one
// probe push decides: success closes it, failure opens it for another
// probe period.
//
// It belongs to the sender goroutine of its sink and is not safe for
// concurrent use.
type breaker struct {
	failures int           // consecutive failures that open it
	probe    time.Duration // how long it stays open before the probe
	failed   int           // consecutive failures so far
	open     bool
	until    time.Time // while open: when the probe may go
}

func newBreaker(failures int, probe time.Duration) *breaker {
	return &breaker{failures: failures, probe: probe}
}

// wait returns how long to wait before the next push may be tried: zero
// while closed, or once an open breaker's probe is due.
func (b *breaker) wait(now time.Time) time.Duration {
	if !b.open || !now.Before(b.until) {
		return 0
	}
	return b.until.Sub(now)
}

// success records a push the receiver answered (taken or refused for
// good) and reports whether that closed the breaker.
func (b *breaker) success() (closed bool) {
	b.failed = 0
	closed = b.open
	b.open = false
	return closed
}

// failure records a failed push and reports whether the breaker went from
// closed to open. A failed probe opens it again for another period.
func (b *breaker) failure(now time.Time) (opened bool) {
	b.failed++
	if b.open {
		b.until = now.Add(b.probe)
		return false
	}
	if b.failed < b.failures {
		return false
	}
	b.open = true
	b.until = now.Add(b.probe)
	return true
}
