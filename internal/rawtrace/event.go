// Package rawtrace ships raw traces — one JSON object a line, the events of
// docs/raw-traces.md — from the agent and the pg-exporter to Loki and
// Graylog. The producers build Events; a Pipeline rate-limits them per
// project by priority, keeps them in a bounded on-disk spool in front of
// each sink, and sends them in batches behind a circuit breaker. Nothing a
// producer calls ever waits on a sink.
package rawtrace

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Priority orders events when they must be dropped (rate limit, full
// spool): the lowest priority goes first. PriorityError is the highest.
type Priority uint8

// The priorities, highest first.
const (
	PriorityError   Priority = iota // abandoned and failed requests, lock trees
	PrioritySlow                    // slow and forced requests, php-fpm's slowlog and long-running workers, activity snapshots
	PrioritySampled                 // sampled requests and call-graph profiles
	numPriorities
)

// String names p for self-metric labels and the spool.
func (p Priority) String() string {
	switch p {
	case PriorityError:
		return "error"
	case PrioritySlow:
		return "slow"
	case PrioritySampled:
		return "sampled"
	}
	return "unknown"
}

// Levels of an event: the Loki label level, and GELF's syslog level
// (error 3, warning 4, info 6).
const (
	LevelError   = "error"
	LevelWarning = "warning"
	LevelInfo    = "info"
)

// IDs are the identifiers of an event that become Loki structured metadata
// (and GELF additional fields). They are in the line too.
type IDs struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	TraceID       string `json:"trace_id,omitempty"`
	RequestID     string `json:"request_id,omitempty"`
	QueryFP       string `json:"query_fp,omitempty"`
}

// Event is one raw trace. Line is the whole event as docs/raw-traces.md
// documents it: one JSON object, no newline, with kind, time, level and
// project in it; the other fields repeat parts of it for the sinks.
type Event struct {
	Kind     string          `json:"kind"`
	Level    string          `json:"level"`
	Priority Priority        `json:"prio"`
	Project  string          `json:"project"`
	Time     time.Time       `json:"time"`
	Summary  string          `json:"summary"` // one human line: GELF's short_message
	IDs      IDs             `json:"ids"`
	Line     json.RawMessage `json:"line,omitempty"`
	// Job and Instance name where the event came from when it was
	// forwarded (pushgw takes events from many hosts); empty: the sink's
	// own, which is the case for every event a daemon produces itself.
	Job      string `json:"job,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// Sink delivers batches of events to one receiver. Send returns nil when
// the receiver took the whole batch, a *PartialError when it took all but
// some events sent one by one, a *PermanentError when it refused the
// batch in a way retrying cannot fix (the batch is dropped and counted),
// and any other error for a failure worth retrying.
type Sink interface {
	Name() string // "loki" or "gelf": the sink label of the self-metrics and the spool's directory name
	Send(ctx context.Context, batch []Event) error
	Close() error
}

// PermanentError is a refusal that retrying cannot fix (HTTP 400, an event
// too large for the receiver).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// PartialError is a batch the receiver took but for some of its events,
// sent one by one (GELF): TooLarge could not be carried at all, Rejected
// were refused for good. The batch is done; the rest count as sent, these
// as dropped.
type PartialError struct {
	TooLarge, Rejected int
	Err                error // the last refusal, for the log
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d events too large, %d refused: %v", e.TooLarge, e.Rejected, e.Err)
}
func (e *PartialError) Unwrap() error { return e.Err }

// Emitter takes events from a producer. Emit never blocks on a sink and
// never fails: what cannot be kept is dropped and counted. A producer asks
// Admit before it builds an event and builds it only when admitted, so
// that what the rate limit would drop is never built. The Pipeline is an
// Emitter; Discard is the one to use when no sink is configured.
type Emitter interface {
	Admit(project string, p Priority) bool
	Emit(Event)
}

// Discard is an Emitter that admits and keeps nothing.
var Discard Emitter = discard{}

type discard struct{}

func (discard) Admit(string, Priority) bool { return false }
func (discard) Emit(Event)                  {}

// origin is the instance and job e is shipped under: its own when it was
// forwarded with them, else the sink's.
func origin(e Event, instance, job string) (string, string) {
	if e.Instance != "" {
		instance = e.Instance
	}
	if e.Job != "" {
		job = e.Job
	}
	return instance, job
}
