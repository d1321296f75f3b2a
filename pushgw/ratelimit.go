package pushgw

import (
	"math"
	"sync"
	"time"
)

// projectLimiter is a token bucket per project: what a push takes (its
// samples or its events) must all be there, or the push waits (429). The
// projects are those of the tokens file, so the map stays small.
type projectLimiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	at     time.Time
}

func newProjectLimiter(rate float64, burst int) *projectLimiter {
	return &projectLimiter{rate: rate, burst: float64(burst), buckets: map[string]*tokenBucket{}}
}

// take takes n tokens of project's bucket at now. When they are not there
// it takes none and says how long until they would be: the Retry-After of
// the 429. n over the burst can never pass; the caller refuses such a push
// before asking.
func (l *projectLimiter) take(project string, n int, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[project]
	if b == nil {
		b = &tokenBucket{tokens: l.burst, at: now}
		l.buckets[project] = b
	}
	if dt := now.Sub(b.at).Seconds(); dt > 0 {
		b.tokens = math.Min(l.burst, b.tokens+dt*l.rate)
		b.at = now
	}
	need := float64(n)
	if b.tokens >= need {
		b.tokens -= need
		return true, 0
	}
	wait := time.Duration((need - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// retryAfterSeconds is the Retry-After value for wait: whole seconds,
// rounded up, at least one.
func retryAfterSeconds(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}
