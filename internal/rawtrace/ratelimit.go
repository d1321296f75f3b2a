package rawtrace

import (
	"sync"
	"time"

	"github.com/bitville/bitville-apm/internal/labelset"
)

// Shares of a project's burst that lower priorities leave in the bucket.
// When a project floods, its sampled events stop first (below half a
// bucket), then its slow ones (below a quarter); the last quarter is kept
// for error events, which pass while a single token is left. Errors are
// what someone is paged for; sampled requests are only a background view.
const (
	slowMinShare    = 0.25 // PrioritySlow passes while the bucket holds at least this share of the burst
	sampledMinShare = 0.50 // PrioritySampled passes while the bucket holds at least this share
)

// rateProjects is how many projects get a bucket of their own; the events
// of every further project share one bucket, so a producer inventing
// project names cannot grow the limiter.
const rateProjects = 1000

// rateOverflow is the key of the shared bucket. A NUL cannot be in a
// project name that reaches a label, so it never collides with one.
const rateOverflow = "\x00other"

// rateLimiter is a token bucket per project: rate tokens a second, up to
// burst, one token an event. Safe for concurrent use.
type rateLimiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     *labelset.Set[string, *bucket]
	expired     time.Time // last time idle buckets were removed
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	r := &rateLimiter{rate: rate, burst: float64(burst)}
	r.buckets = labelset.New(labelset.Options[string, *bucket]{
		Limit:    rateProjects,
		Overflow: func(string) string { return rateOverflow },
		New:      func(string) *bucket { return &bucket{tokens: r.burst} },
	})
	return r
}

// allow takes a token from the project's bucket if an event of priority p
// may pass at now.
func (r *rateLimiter) allow(project string, p Priority, now time.Time) bool {
	return r.check(project, p, now, true)
}

// admits says whether an event of priority p would pass at now, and
// leaves the token.
func (r *rateLimiter) admits(project string, p Priority, now time.Time) bool {
	return r.check(project, p, now, false)
}

func (r *rateLimiter) check(project string, p Priority, now time.Time, take bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expire(now)
	_, b := r.buckets.Get(project, now)
	if !b.last.IsZero() {
		if d := now.Sub(b.last).Seconds(); d > 0 {
			b.tokens = min(r.burst, b.tokens+d*r.rate)
		}
	}
	b.last = now
	need := 1.0
	switch p {
	case PrioritySlow:
		need = max(need, slowMinShare*r.burst)
	case PrioritySampled:
		need = max(need, sampledMinShare*r.burst)
	}
	if b.tokens < need {
		return false
	}
	if take {
		b.tokens--
	}
	return true
}

// expire forgets, at most once a refill period, the buckets idle for longer
// than it takes an empty bucket to fill: a new bucket is full, so
// forgetting them changes nothing but frees a place for another project.
func (r *rateLimiter) expire(now time.Time) {
	refill := time.Duration(r.burst / r.rate * float64(time.Second))
	if refill < time.Second {
		refill = time.Second
	}
	if now.Sub(r.expired) < refill {
		return
	}
	r.expired = now
	r.buckets.Expire(now.Add(-refill), nil)
}
