package phpagent

import (
	"sync"
	"time"

	"github.com/bitville/bitville-apm/exporters/fpm"
)

// Event kinds. The fpm ones come from php-fpm itself, through EmitFPM.
const (
	EventAbandoned      = "abandoned"          // a request started and never finished
	EventLongRunning    = "long_running"       // a request crossed the long-running threshold
	EventFPMLongRunning = fpm.EventLongRunning // a php-fpm worker ran one request past the threshold
	EventFPMSlowlog     = fpm.EventSlowlog     // php-fpm wrote a slowlog entry
)

// Event is a notable request: abandoned, long running, or one php-fpm
// reported. The recent ones are kept in memory and served at
// /api/v1/events; all but EventLongRunning are also shipped as raw traces
// (traces.go), which a long_running event would only repeat: the request
// ends as slow, or is abandoned.
type Event struct {
	Kind    string          `json:"kind"`
	Time    time.Time       `json:"time"`
	Reason  string          `json:"reason,omitempty"` // for abandoned: AbandonSuperseded, AbandonPIDGone, AbandonExpired
	Seconds float64         `json:"seconds"`          // how long the request had been running (0 when unknown)
	Request InflightRequest `json:"request"`          // for php-fpm events: what the PHP agent reported for that worker pid, else pool, pid and what php-fpm knows
	// Slowlog is the entry of an EventFPMSlowlog.
	Slowlog *fpm.SlowlogEntry `json:"slowlog,omitempty"`
	// FPMWorker is the status page's worker of an EventFPMLongRunning.
	FPMWorker *fpm.Worker `json:"fpm_worker,omitempty"`
}

// EmitFPM keeps an event of php-fpm's like the agent's own: it is the Sink
// of the fpm.Monitor. The event's request is the in-flight request
// FPMRequest gave it, or what php-fpm knows of it.
func (a *Agent) EmitFPM(e fpm.Event) {
	req, ok := e.Request.Detail.(InflightRequest)
	if !ok {
		r := e.Request
		req = InflightRequest{Pool: r.Pool, PID: r.PID, Method: r.Method, URI: r.URI, Started: r.Started, LastSeen: r.LastSeen}
	}
	a.emit(Event{Kind: e.Kind, Time: e.Time, Seconds: e.Seconds, Request: req, Slowlog: e.Slowlog, FPMWorker: e.Worker})
	if a.traces.on {
		a.traceFPM(&e, &req)
	}
}

// FPMRequest returns the request in flight on worker pid, to enrich
// php-fpm's events with what the PHP agent reported about the same
// request: it is the Lookup of the fpm.Monitor. Detail is the
// InflightRequest, a copy the caller owns.
func (a *Agent) FPMRequest(pid int) (fpm.Request, bool) {
	r, ok := a.inflight.Get(pid)
	if !ok {
		return fpm.Request{}, false
	}
	return fpm.Request{Pool: r.Pool, PID: r.PID, Method: r.Method, URI: r.URI, Started: r.Started, LastSeen: r.LastSeen, Detail: r}, true
}

// EventRing keeps the most recent events. Safe for concurrent use (Emit is
// called from the datagram readers and the in-flight sweep and never
// blocks for long); Recent returns copies the caller owns.
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
