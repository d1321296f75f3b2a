package phpagent

import (
	"cmp"
	"encoding/json"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// Raw traces: the agent turns the requests worth a look — failed, slow,
// forced or drawn at random, abandoned, profiled, and those php-fpm itself
// reported — into the events of docs/raw-traces.md and hands them to a
// rawtrace.Emitter. traces_request.go builds the request and profile
// events from an end message; this file decides which requests go, and
// builds the others.

// Kinds of the raw traces the agent ships besides php-fpm's
// (EventFPMSlowlog, EventFPMLongRunning) and EventAbandoned.
const (
	TraceRequest = "request" // a failed, slow, forced or sampled request
	TraceProfile = "profile" // the call graph of a request profiled by tideways or xhprof
)

// Profilers whose end message holds a full call graph, worth a profile
// event; excimer's sampled functions are already in the metrics.
const (
	profilerTideways = "tideways"
	profilerXHProf   = "xhprof"
)

// reasons is the set of reasons a request is shipped for.
type reasons uint8

// The reasons, strongest first: the strongest sets the event's level and
// priority.
const (
	reasonFailed reasons = 1 << iota
	reasonSlow
	reasonForced
	reasonSampled
)

// reasonNames are the values of the request event's reasons array, in the
// order of the reasons above.
var reasonNames = [...]string{"failed", "slow", "forced", "sampled"}

// names lists the reasons in r, strongest first.
func (r reasons) names() []string {
	out := make([]string, 0, len(reasonNames))
	for i, n := range reasonNames {
		if r&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// level returns the level and priority of a request event by its
// strongest reason.
func (r reasons) level() (string, rawtrace.Priority) {
	switch {
	case r&reasonFailed != 0:
		return rawtrace.LevelError, rawtrace.PriorityError
	case r&reasonSlow != 0:
		return rawtrace.LevelWarning, rawtrace.PrioritySlow
	case r&reasonForced != 0:
		// The developer asked for this request: keep it like a slow one.
		return rawtrace.LevelInfo, rawtrace.PrioritySlow
	}
	return rawtrace.LevelInfo, rawtrace.PrioritySampled
}

// tracer holds what the raw traces need: where they go, the selection,
// and the host name of events whose message did not name one.
type tracer struct {
	out      rawtrace.Emitter
	on       bool    // out is not rawtrace.Discard: without it nothing is built
	slow     float64 // events.slow-threshold in seconds, compared with an end's wall
	sample   float64
	draw     func() float64 // uniform in [0, 1): the sampled draw
	maxFns   int
	maxLine  int // the sink's longest line: a larger request event is trimmed to fit (0: no limit)
	hostname string
	errs     *throttle.Throttle // logs of events that cannot be encoded
	log      *slog.Logger
}

func newTracer(c Traces, log *slog.Logger) tracer {
	host, err := os.Hostname()
	if err != nil {
		log.Warn("cannot read the host name for raw traces; events without a host of their own have none", "err", err)
	}
	return tracer{
		out:      rawtrace.Discard,
		slow:     c.SlowThreshold.Seconds(),
		sample:   c.SampleRate,
		draw:     rand.Float64,
		maxFns:   c.ProfileFunctions,
		hostname: host,
		errs:     throttle.New(logEvery),
		log:      log,
	}
}

// ShipTo sends the agent's raw traces to e (by default rawtrace.Discard:
// none are built), whose lines may be at most maxLine bytes (0: any): a
// request event that would be longer is trimmed to fit (requestFit). Call
// it before Serve and RunBackground; e must be safe for concurrent use, as
// the datagram readers and the sweep emit at once. The events of
// /api/v1/events are kept as before.
func (a *Agent) ShipTo(e rawtrace.Emitter, maxLine int) {
	if e == nil {
		e = rawtrace.Discard
	}
	a.traces.out = e
	a.traces.maxLine = maxLine
	a.traces.on = e != rawtrace.Discard
}

// reasons says why m's request is shipped; 0 when it is not. A request
// neither failed, slow nor forced is drawn at the sample rate.
func (t *tracer) reasons(m *protocol.Message) reasons {
	var r reasons
	if failed(m) {
		r |= reasonFailed
	}
	if m.Wall >= t.slow {
		r |= reasonSlow
	}
	if m.Forced {
		r |= reasonForced
	}
	if r == 0 && t.sample > 0 && t.draw() < t.sample {
		r = reasonSampled
	}
	return r
}

// failed says whether m's request failed: a fatal error, an uncaught
// exception (an errors entry named after its class rather than an E_*
// constant), a server error status, or a CLI run's exit code other than 0.
func failed(m *protocol.Message) bool {
	if m.Fatal || m.Status >= 500 || (m.HasExit && m.Exit != 0) {
		return true
	}
	for i := range m.Errors {
		if !strings.HasPrefix(m.Errors[i].Type, "E_") {
			return true
		}
	}
	return false
}

// traceEnd ships what an end message is worth: a request event when it
// has a reason, a profile event when it carries a call graph.
func (a *Agent) traceEnd(m *protocol.Message, fps []sqlfp.Result) {
	t := &a.traces
	if r := t.reasons(m); r != 0 {
		// Asked before building: under a flood the rate limit refuses
		// most, and a refused event costs nothing but the question.
		if _, prio := r.level(); t.out.Admit(m.Project, prio) {
			t.ship(requestEvent(t, m, fps, r))
		}
	}
	if len(m.Functions) > 0 && (m.Profiler == profilerTideways || m.Profiler == profilerXHProf) && t.out.Admit(m.Project, profilePriority(m)) {
		t.ship(profileEvent(t, m))
	}
}

// ship emits e; an event that could not be encoded has no Line and is
// dropped.
func (t *tracer) ship(e rawtrace.Event, err error) {
	if err != nil {
		if n, ok := t.errs.Allow(); ok {
			t.log.Warn("cannot encode a raw trace; dropped", "kind", e.Kind, "err", err, "suppressed_since_last", n)
		}
		return
	}
	t.out.Emit(e)
}

// event completes e with line, marshalled now: the line is a copy of
// everything it holds, whatever the decoder reuses next.
func event(e rawtrace.Event, line any) (rawtrace.Event, error) {
	b, err := json.Marshal(line)
	e.Line = b
	return e, err
}

// phpFields are the fields every PHP kind's line starts with.
type phpFields struct {
	Kind          string    `json:"kind"`
	Time          time.Time `json:"time"`
	Level         string    `json:"level"`
	Project       string    `json:"project,omitempty"`
	Host          string    `json:"host,omitempty"`
	Pool          string    `json:"pool,omitempty"`
	PID           int       `json:"pid,omitempty"`
	RequestID     string    `json:"request_id,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	TraceID       string    `json:"trace_id,omitempty"`
	SAPI          string    `json:"sapi,omitempty"`
	Method        string    `json:"method,omitempty"`
	Endpoint      string    `json:"endpoint,omitempty"`
	URI           string    `json:"uri,omitempty"`
}

// inflightFields are the common fields of a request the agent holds in
// flight (an abandoned one, or one php-fpm reported on).
func (t *tracer) inflightFields(kind, level string, at time.Time, r *InflightRequest) phpFields {
	return phpFields{
		Kind: kind, Time: at.UTC(), Level: level,
		Project: r.Project, Host: t.host(r.Host), Pool: r.Pool, PID: r.PID,
		RequestID: r.ID, CorrelationID: r.CID, TraceID: r.TraceID, SAPI: r.SAPI,
		Method: r.Method, Endpoint: cmp.Or(r.Operation, r.Endpoint), URI: r.URI,
	}
}

func (t *tracer) host(h string) string {
	if h != "" {
		return h
	}
	return t.hostname
}

// seconds rounds a computed duration to the microsecond, so that sums and
// differences read like the durations they come from.
func seconds(s float64) float64 { return math.Round(s*1e6) / 1e6 }

// head names a request in a summary: its endpoint, else its method and
// URI, else its worker.
func head(endpoint, method, uri, pool string, pid int) string {
	switch {
	case endpoint != "":
		return endpoint
	case uri != "":
		return strings.TrimSpace(method + " " + uri)
	}
	return "pool " + pool + " pid " + strconv.Itoa(pid)
}

// abandonedLine is the line of an EventAbandoned.
type abandonedLine struct {
	phpFields
	Reason  string   `json:"reason"`
	Seconds float64  `json:"seconds"`           // age when given up on
	Elapsed float64  `json:"elapsed,omitempty"` // how far it had got when last heard of
	Stack   []string `json:"stack,omitempty"`   // of the last progress, outermost first
	CPU     float64  `json:"cpu,omitempty"`     // of the last progress
	Mem     int64    `json:"mem,omitempty"`     // of the last progress
}

// traceAbandoned ships r, abandoned for reason at now.
func (a *Agent) traceAbandoned(r *InflightRequest, reason string, now time.Time) {
	t := &a.traces
	if !t.out.Admit(r.Project, rawtrace.PriorityError) {
		return
	}
	l := abandonedLine{
		phpFields: t.inflightFields(EventAbandoned, rawtrace.LevelError, now, r),
		Reason:    reason,
		Seconds:   seconds(r.Age(now).Seconds()),
		Stack:     r.Stack,
		CPU:       r.CPU,
		Mem:       r.Memory,
	}
	if r.Progress > 0 {
		l.Elapsed = seconds(r.LastSeen.Sub(r.Started).Seconds())
	}
	t.ship(event(rawtrace.Event{
		Kind: EventAbandoned, Level: rawtrace.LevelError, Priority: rawtrace.PriorityError,
		Project: r.Project, Time: l.Time,
		Summary: head(l.Endpoint, r.Method, r.URI, r.Pool, r.PID) + " abandoned (" + reason + ") after " + strconv.FormatFloat(l.Seconds, 'f', 1, 64) + "s",
		IDs:     rawtrace.IDs{CorrelationID: r.CID, TraceID: r.TraceID, RequestID: r.ID},
	}, l))
}
