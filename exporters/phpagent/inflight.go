package phpagent

import (
	"errors"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
)

// Abandon reasons: why an in-flight request was given up on. They are a
// fixed set because they label events and counters.
const (
	AbandonSuperseded = "superseded" // its worker started another request
	AbandonPIDGone    = "pid_gone"   // its worker process no longer exists (killed, crashed)
	AbandonExpired    = "expired"    // nothing heard of it for longer than the maximum age
)

// InflightRequest is a started request whose end has not arrived.
type InflightRequest struct {
	Project  string `json:"project"`
	Endpoint string `json:"endpoint"` // after cardinality limits: what the metrics say
	// Operation is the endpoint as the PHP agent named it, before the
	// limits: what a raw trace shows.
	Operation string    `json:"operation,omitempty"`
	ID        string    `json:"id"`
	CID       string    `json:"cid,omitempty"`
	TraceID   string    `json:"trace_id,omitempty"`
	SAPI      string    `json:"sapi,omitempty"`
	PID       int       `json:"pid"`
	Method    string    `json:"method,omitempty"`
	URI       string    `json:"uri,omitempty"`
	Host      string    `json:"host,omitempty"`
	Pool      string    `json:"pool,omitempty"`
	Started   time.Time `json:"started"`
	LastSeen  time.Time `json:"last_seen"` // when the daemon last heard of it
	// From the latest progress message.
	Stack    []string `json:"stack,omitempty"`
	Memory   int64    `json:"memory_bytes,omitempty"`
	CPU      float64  `json:"cpu_seconds,omitempty"`
	Progress int64    `json:"progress_messages,omitempty"`

	longReported bool
}

// Age is how long r has been running at now.
func (r *InflightRequest) Age(now time.Time) time.Duration { return now.Sub(r.Started) }

// InflightTable tracks requests between their start and end messages, keyed
// by worker pid: a PHP worker runs one request at a time, so a pid with an
// open entry that starts another request has lost the first one's end.
//
// All methods are safe for concurrent use. Returned requests are copies the
// caller owns.
type InflightTable struct {
	mu    sync.Mutex
	byPID map[int]*InflightRequest
	// ended remembers, per pid, the request that ended last and when, so a
	// start or progress of that request processed after its end (several
	// readers drain the socket, so messages of one worker can be handled
	// out of order) does not reopen it as a phantom that would later be
	// counted as abandoned. Entries older than endedKeep are swept.
	ended map[int]endedRef
	// held keeps requests out of the table whose end may still come:
	// those whose worker moved on to another request (with the PHP spool
	// on, their end may come from the spool), for the grace period, and
	// those whose process is gone, until the next sweep (a CLI script or a
	// worker that exits right after sending its end is seen gone while the
	// end still waits in the socket). An end that comes meanwhile closes
	// the request as ended normally; otherwise it is abandoned.
	held    map[reqKey]heldReq
	grace   time.Duration
	max     int
	maxAge  time.Duration
	long    time.Duration
	checkPI bool
	alive   func(pid int) bool
}

type reqKey struct{ project, id string }

type heldReq struct {
	req    InflightRequest
	at     time.Time     // when it was taken out of the table
	hold   time.Duration // how long its end is waited for, past the sweep that held it
	reason string        // AbandonSuperseded or AbandonPIDGone
}

// NewInflightTable returns a table holding at most max requests. A request
// older than long is reported once as long running; one silent for maxAge is
// abandoned; with checkPIDs, one whose pid is gone is abandoned at the
// next sweep unless its end came meanwhile. A request
// superseded by a later one of its worker is abandoned once grace has
// passed without its end (at once when grace is 0).
func NewInflightTable(max int, long, maxAge, grace time.Duration, checkPIDs bool) *InflightTable {
	return &InflightTable{
		byPID:   make(map[int]*InflightRequest),
		ended:   make(map[int]endedRef),
		held:    make(map[reqKey]heldReq),
		grace:   grace,
		max:     max,
		maxAge:  maxAge,
		long:    long,
		checkPI: checkPIDs,
		alive:   processAlive,
	}
}

// endedKeep is how long an ended request is remembered against late
// messages. Reordering among readers spans microseconds, and an end taken
// from the spool comes seconds before a start still queued on the socket;
// a minute is ample.
const endedKeep = time.Minute

type endedRef struct {
	project, id string
	started     time.Time
	at          time.Time
}

// isEnded says whether a start or progress of m's request, which started at
// started, comes after the end of that request or of a later one of the
// same worker: then it would open a phantom that is later counted as
// abandoned.
func (t *InflightTable) isEnded(m *protocol.Message, started time.Time) bool {
	e, ok := t.ended[m.PID]
	if !ok {
		return false
	}
	return (e.id == m.ID && e.project == m.Project) || started.Before(e.started)
}

// markEnded records the end of m's request, unless the worker's last
// recorded end is of a later request (an end taken late from the spool).
// The map is bounded by the table size (beyond it late messages may again
// open phantoms, which the sweep then expires).
func (t *InflightTable) markEnded(m *protocol.Message, now time.Time) {
	started := unixTime(m.Started)
	e, ok := t.ended[m.PID]
	if ok && started.Before(e.started) {
		return
	}
	if ok || len(t.ended) < t.max {
		t.ended[m.PID] = endedRef{project: m.Project, id: m.ID, started: started, at: now}
	}
}

// supersede takes r out of the table because its worker moved on to
// another request. Without a grace period it is returned as abandoned now;
// with one it waits for a late end (or the sweep). Called with mu held.
func (t *InflightTable) supersede(r *InflightRequest, now time.Time) *InflightRequest {
	if t.grace > 0 && t.hold(r, now, t.grace, AbandonSuperseded) {
		return nil
	}
	delete(t.byPID, r.PID)
	c := *r
	return &c
}

// hold takes r out of the table to wait for its end (held), unless held
// is full. Called with mu held.
func (t *InflightTable) hold(r *InflightRequest, now time.Time, hold time.Duration, reason string) bool {
	if len(t.held) >= t.max {
		return false
	}
	delete(t.byPID, r.PID)
	t.held[reqKey{r.Project, r.ID}] = heldReq{req: *r, at: now, hold: hold, reason: reason}
	return true
}

// processAlive says whether pid exists. EPERM means it exists but belongs to
// another user, which is the normal case for php-fpm workers.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ErrInflightFull is returned by Start when the table holds its maximum.
var ErrInflightFull = errors.New("in-flight table full")

// Start opens an entry for a start message received at now, with the
// endpoint as the metrics will label it. If the pid had another request
// open, that one is returned as abandoned.
func (t *InflightTable) Start(m *protocol.Message, endpoint string, now time.Time) (abandoned *InflightRequest, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	started := unixTime(m.Started)
	if t.isEnded(m, started) {
		return nil, nil // a start handled after its own end, or a later one's
	}
	if old, ok := t.byPID[m.PID]; ok {
		if old.ID == m.ID && old.Project == m.Project {
			old.LastSeen = now // a repeated start: nothing new
			return nil, nil
		}
		if started.Before(old.Started) {
			// A late start of an earlier request of this worker: the open
			// one is newer and still running. The earlier request's end
			// is aggregated when it comes.
			return nil, nil
		}
		abandoned = t.supersede(old, now)
	} else if len(t.byPID) >= t.max {
		return nil, ErrInflightFull
	}
	t.byPID[m.PID] = &InflightRequest{
		Project: m.Project, Endpoint: endpoint, Operation: m.Endpoint, ID: m.ID, CID: m.CID, TraceID: m.TraceID, SAPI: m.SAPI, PID: m.PID,
		Method: m.Method, URI: m.URI, Host: m.Host, Pool: m.Pool,
		Started: started, LastSeen: now,
	}
	return abandoned, nil
}

// Progress records a progress message. A progress for a request whose start
// was lost opens the entry, since a stuck request is exactly what must be
// seen. The returned abandoned request is as in Start.
func (t *InflightTable) Progress(m *protocol.Message, endpoint string, now time.Time) (abandoned *InflightRequest, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	started := unixTime(m.TS - m.Elapsed)
	if t.isEnded(m, started) {
		return nil, nil // a progress handled after its request's end
	}
	if _, ok := t.held[reqKey{m.Project, m.ID}]; ok {
		return nil, nil // a progress handled after its worker moved on or went
	}
	r, ok := t.byPID[m.PID]
	if ok && (r.ID != m.ID || r.Project != m.Project) {
		if started.Before(r.Started) {
			return nil, nil // from an earlier request of this worker
		}
		abandoned = t.supersede(r, now)
		ok = false
	}
	if !ok {
		if len(t.byPID) >= t.max {
			return abandoned, ErrInflightFull
		}
		r = &InflightRequest{
			Project: m.Project, ID: m.ID, PID: m.PID, Host: m.Host, Pool: m.Pool, SAPI: m.SAPI,
			Started: started,
		}
		t.byPID[m.PID] = r
	}
	if endpoint != "" {
		r.Endpoint, r.Operation = endpoint, m.Endpoint
	}
	r.LastSeen = now
	r.Stack = append(r.Stack[:0], m.Stack...)
	r.Memory = m.Memory
	r.CPU = m.CPU
	r.Progress++
	return abandoned, nil
}

// End closes the entry of an end message received at now and returns it
// (nil when its start was not seen, or not yet). An open entry of the same
// pid for an earlier request is superseded: its end was lost, or is still
// in the spool. An open entry for a later request is left alone: this end
// arrived late, and closes the request if it is held (superseded, or its
// pid gone).
func (t *InflightTable) End(m *protocol.Message, now time.Time) (closed, abandoned *InflightRequest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.markEnded(m, now)
	if r, ok := t.byPID[m.PID]; ok {
		if r.ID == m.ID && r.Project == m.Project {
			delete(t.byPID, m.PID)
			c := *r
			return &c, nil
		}
		if !unixTime(m.Started).Before(r.Started) {
			abandoned = t.supersede(r, now)
		}
	}
	k := reqKey{m.Project, m.ID}
	if s, ok := t.held[k]; ok {
		delete(t.held, k)
		c := s.req
		return &c, abandoned
	}
	return nil, abandoned
}

// Abandoned is a request the sweep gave up on, with the reason.
type Abandoned struct {
	Request InflightRequest
	Reason  string
}

// Sweep abandons requests whose pid is gone or that were silent for longer
// than the maximum age, and returns requests that crossed the long-running
// threshold since the last sweep.
func (t *InflightTable) Sweep(now time.Time) (abandoned []Abandoned, becameLong []InflightRequest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, e := range t.ended {
		if now.Sub(e.at) > endedKeep {
			delete(t.ended, pid)
		}
	}
	// A request held by this sweep waits until the next one at least.
	for k, s := range t.held {
		if now.After(s.at) && now.Sub(s.at) >= s.hold {
			delete(t.held, k)
			abandoned = append(abandoned, Abandoned{Request: s.req, Reason: s.reason})
		}
	}
	for pid, r := range t.byPID {
		reason := ""
		switch {
		case now.Sub(r.LastSeen) > t.maxAge:
			reason = AbandonExpired
		case t.checkPI && !t.alive(pid):
			if t.hold(r, now, 0, AbandonPIDGone) {
				continue
			}
			reason = AbandonPIDGone
		}
		if reason != "" {
			delete(t.byPID, pid)
			abandoned = append(abandoned, Abandoned{Request: *r, Reason: reason})
			continue
		}
		if !r.longReported && r.Age(now) >= t.long {
			r.longReported = true
			becameLong = append(becameLong, *r)
		}
	}
	return abandoned, becameLong
}

// InflightCounts is the number of requests in flight and of those running
// longer than the threshold, for one project and endpoint.
type InflightCounts struct {
	InFlight, LongRunning int
}

// Counts returns the in-flight counts by series key at now.
func (t *InflightTable) Counts(now time.Time) map[endpointKey]InflightCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[endpointKey]InflightCounts)
	for _, r := range t.byPID {
		k := endpointKey{r.Project, r.Endpoint}
		c := out[k]
		c.InFlight++
		if r.Age(now) >= t.long {
			c.LongRunning++
		}
		out[k] = c
	}
	return out
}

// Snapshot returns copies of all entries, longest running first.
func (t *InflightTable) Snapshot() []InflightRequest {
	t.mu.Lock()
	out := make([]InflightRequest, 0, len(t.byPID))
	for _, r := range t.byPID {
		c := *r
		c.Stack = slices.Clone(r.Stack)
		out = append(out, c)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b InflightRequest) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return a.PID - b.PID
	})
	return out
}

// Get returns a copy of the entry of pid.
func (t *InflightTable) Get(pid int) (InflightRequest, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.byPID[pid]
	if !ok {
		return InflightRequest{}, false
	}
	c := *r
	c.Stack = slices.Clone(r.Stack)
	return c, true
}

// Len is the number of entries.
func (t *InflightTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byPID)
}

func unixTime(sec float64) time.Time {
	s := int64(sec)
	return time.Unix(s, int64((sec-float64(s))*1e9))
}
