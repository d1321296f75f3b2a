package fpm

import "time"

// Event kinds, as the agent's raw traces name them (docs/raw-traces.md).
const (
	// EventLongRunning is the kind of the event for a php-fpm worker seen
	// in the status page running one request for longer than the
	// long-request threshold. It is reported once per request (worker pid,
	// worker start time, and the worker's request counter identify the
	// request).
	EventLongRunning = "fpm_long_running"
	// EventSlowlog is the kind of the event for one slowlog entry.
	EventSlowlog = "fpm_slowlog"
)

// Event is something php-fpm showed about one request: a worker running
// past the long-request threshold, or a slowlog entry.
type Event struct {
	Kind    string    // EventLongRunning or EventSlowlog
	Time    time.Time // of the status read, or the slowlog entry's
	Seconds float64   // how long the request had been running; 0 when unknown
	// Request is the request the event is about: what the Lookup returned
	// for the worker's pid when the PHP agent reported a request of the
	// same pool there (it knows more: project, endpoint, id, stack), else
	// what php-fpm tells of it.
	Request Request
	Slowlog *SlowlogEntry // the entry of an EventSlowlog
	Worker  *Worker       // the status page's worker of an EventLongRunning
}

// Request is a request as fpm knows it from php-fpm (pool, pid, and from
// the status page method, uri, start and when it was seen), or as a Lookup
// reports it.
type Request struct {
	Pool     string // "" when the reporter does not know it
	PID      int
	Method   string
	URI      string
	Started  time.Time
	LastSeen time.Time
	// Detail is the Lookup's own record of the request, nil in what fpm
	// builds itself. fpm passes it on in Event.Request untouched, so the
	// sink gets back whatever its Lookup returned.
	Detail any
}

// Sink receives the events. It is called from scrapes, API calls and the
// pollers, so it must not block; events of one Monitor can arrive
// concurrently.
type Sink func(Event)

// Lookup returns the request the PHP agent reported as running on a worker
// pid, if any. It is called from the same places as Sink and must be safe
// for concurrent use.
type Lookup func(pid int) (Request, bool)

// reportedRequest returns what the lookup knows about the request of pid,
// when it is one of the same pool (a PHP agent that does not know its pool
// matches any).
func (m *Monitor) reportedRequest(pid int, pool string) (Request, bool) {
	r, ok := m.lookup(pid)
	if !ok || (r.Pool != "" && r.Pool != pool) {
		return Request{}, false
	}
	return r, true
}

// reportLong emits an event for each worker of r that runs a request for
// longer than the long-request threshold and was not reported yet. Called
// with p.mu held.
func (m *Monitor) reportLong(p *statusPage, r statusRead) {
	seen := make(map[requestKey]bool, len(p.long))
	var fresh []Worker
	for _, w := range r.status.Workers {
		if !w.Running() || w.duration < m.longRequest {
			continue
		}
		k := requestKey{w.PID, w.Started.Unix(), w.Requests}
		seen[k] = true
		if !p.long[k] {
			fresh = append(fresh, w)
		}
	}
	p.long = seen
	for i := range fresh {
		w := fresh[i]
		req, ok := m.reportedRequest(w.PID, r.status.Pool)
		if !ok {
			req = Request{
				Pool: r.status.Pool, PID: w.PID, Method: w.Method, URI: w.URI,
				Started:  r.at.Add(-w.duration),
				LastSeen: r.at,
			}
		}
		m.sink(Event{Kind: EventLongRunning, Time: r.at, Seconds: w.RequestSeconds, Request: req, Worker: &w})
	}
}

// reportSlowlog emits an event for a slowlog entry counted under the pool
// label value pool, at now.
func (m *Monitor) reportSlowlog(e SlowlogEntry, pool string, now time.Time) {
	req, ok := m.reportedRequest(e.PID, e.Pool)
	var seconds float64
	if ok {
		seconds = now.Sub(req.Started).Seconds()
	} else {
		req = Request{Pool: pool, PID: e.PID}
	}
	at := e.Time
	if at.IsZero() {
		at = now
	}
	m.sink(Event{Kind: EventSlowlog, Time: at, Seconds: seconds, Request: req, Slowlog: &e})
}
