package phpagent

import (
	"sync"
	"time"
)

// Event kinds. EventFPMLongRunning (fpmstatus.go) and EventFPMSlowlog
// (slowlog.go) come from php-fpm itself.
const (
	EventAbandoned   = "abandoned"    // a request started and never finished
	EventLongRunning = "long_running" // a request crossed the long-running threshold
)

// Event is a notable request the raw-trace sink ships (Loki, later GELF).
// Until a sink is configured the recent ones are kept in memory and served
// at /api/v1/events.
type Event struct {
	Kind    string          `json:"kind"`
	Time    time.Time       `json:"time"`
	Reason  string          `json:"reason,omitempty"` // for abandoned: AbandonSuperseded, AbandonPIDGone, AbandonExpired
	Seconds float64         `json:"seconds"`          // how long the request had been running (0 when unknown)
	Request InflightRequest `json:"request"`          // for php-fpm events: what the PHP agent reported for that worker pid, else pool, pid and what php-fpm knows
	// Slowlog is the entry of an EventFPMSlowlog.
	Slowlog *SlowlogEntry `json:"slowlog,omitempty"`
	// FPMWorker is the status page's worker of an EventFPMLongRunning.
	FPMWorker *FPMWorker `json:"fpm_worker,omitempty"`
}

// EventSink receives events. Emit must not block: it is called from the
// datagram readers and the in-flight sweep.
type EventSink interface {
	Emit(Event)
}

// EventRing keeps the most recent events. Safe for concurrent use; Recent
// returns copies the caller owns.
type EventRing struct {
	mu   sync.Mutex
	buf  []Event
	next int
	full bool
}

// NewEventRing keeps the last n events.
func NewEventRing(n int) *EventRing { return &EventRing{buf: make([]Event, n)} }

// Emit stores e, replacing the oldest event when the ring is full.
func (r *EventRing) Emit(e Event) {
	r.mu.Lock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Recent returns the stored events, newest first.
func (r *EventRing) Recent() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Event, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}
