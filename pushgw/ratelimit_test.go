package pushgw

import (
	"testing"
	"time"
)

func TestProjectLimiter(t *testing.T) {
	l := newProjectLimiter(100, 1000)
	now := time.Unix(1000, 0)
	steps := []struct {
		name    string
		project string
		n       int
		after   time.Duration
		ok      bool
		retry   time.Duration
	}{
		{"the burst passes", "shop", 1000, 0, true, 0},
		{"then nothing is left", "shop", 1, 0, false, 10 * time.Millisecond},
		{"another project has its own bucket", "blog", 1000, 0, true, 0},
		{"refilled at the rate", "shop", 500, 5 * time.Second, true, 0},
		{"not over the burst", "shop", 1000, time.Hour, true, 0},
		{"a push larger than what is left waits for it", "shop", 300, time.Second, false, 2 * time.Second},
	}
	for _, s := range steps {
		now = now.Add(s.after)
		ok, retry := l.take(s.project, s.n, now)
		if ok != s.ok || retry != s.retry {
			t.Errorf("%s: take(%s, %d) = %v, %s; want %v, %s", s.name, s.project, s.n, ok, retry, s.ok, s.retry)
		}
	}
	if got := retryAfterSeconds(10 * time.Millisecond); got != 1 {
		t.Errorf("retryAfterSeconds(10ms) = %d; want 1", got)
	}
	if got := retryAfterSeconds(2100 * time.Millisecond); got != 3 {
		t.Errorf("retryAfterSeconds(2.1s) = %d; want 3", got)
	}
}
