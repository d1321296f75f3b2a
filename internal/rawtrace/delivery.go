package rawtrace

import (
	"context"
	"crypto/tls"
	"sync"
	"time"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

// The pieces of a sink's delivery that other durable senders (the metrics
// push of internal/push) reuse, so that every sender of the project backs
// off and breaks the same way.

// Delivery is the retry policy of a sender: when its breaker opens and how
// long it waits between tries.
type Delivery struct {
	BreakerFailures int           // consecutive failures that open the breaker
	BreakerProbe    time.Duration // how long an open breaker waits before one probe
	BackoffMin      time.Duration // first wait after a failure
	BackoffMax      time.Duration // longest wait while the breaker is closed
}

var defaultDelivery = sync.OnceValue(func() Delivery {
	var c Config
	flagdefaults.Must(&c)
	return c.Delivery()
})

// DefaultDelivery is the policy of the events.* flag defaults, read from
// their tags.
func DefaultDelivery() Delivery { return defaultDelivery() }

// Delivery is the retry policy c sets for the sinks.
func (c Config) Delivery() Delivery {
	return Delivery{BreakerFailures: c.BreakerFailures, BreakerProbe: c.BreakerProbe, BackoffMin: c.BackoffMin, BackoffMax: c.BackoffMax}
}

// Backoff is the wait after the n-th consecutive failure under d: a
// uniform draw between BackoffMin and a ceiling that doubles from it up to
// BackoffMax.
func (d Delivery) Backoff(n int) time.Duration { return Backoff(d.BackoffMin, d.BackoffMax, n) }

// NewBreaker returns a closed breaker with d's settings.
func (d Delivery) NewBreaker() *Breaker { return NewBreaker(d.BreakerFailures, d.BreakerProbe) }

// Backoff is the wait after the n-th consecutive failure: a uniform draw
// between lo and a ceiling that starts at lo and doubles up to hi, so that
// many senders that lost their receiver at once do not come back in step.
func Backoff(lo, hi time.Duration, n int) time.Duration { return backoff(lo, hi, n) }

// Sleep waits d and reports true, or false as soon as ctx ends.
func Sleep(ctx context.Context, d time.Duration) bool { return sleep(ctx, d) }

// Breaker is the circuit breaker of a sink (see breaker): after a number
// of consecutive failures it opens, and no try is made until a probe
// period has passed; then one probe decides. It belongs to one sender
// goroutine and is not safe for concurrent use.
type Breaker struct{ b *breaker }

// NewBreaker returns a closed breaker that opens after failures
// consecutive failures and probes every probe while open.
func NewBreaker(failures int, probe time.Duration) *Breaker {
	return &Breaker{b: newBreaker(failures, probe)}
}

// Wait is how long to wait before the next try: zero while closed or once
// an open breaker's probe is due.
func (b *Breaker) Wait(now time.Time) time.Duration { return b.b.wait(now) }

// Success records a try the receiver answered (taken or refused for good)
// and reports whether that closed the breaker.
func (b *Breaker) Success() (closed bool) { return b.b.success() }

// Failure records a failed try and reports whether the breaker went from
// closed to open.
func (b *Breaker) Failure(now time.Time) (opened bool) { return b.b.failure(now) }

// Open reports whether the breaker is open.
func (b *Breaker) Open() bool { return b.b.open }

// Failed is the number of consecutive failures so far.
func (b *Breaker) Failed() int { return b.b.failed }

// ClientTLS builds the client TLS configuration of t: the CA file, the
// client certificate and the server name, read now so that a mistake fails
// at start.
func (t TLSConfig) ClientTLS() (*tls.Config, error) { return sinkTLSConfig(t) }
