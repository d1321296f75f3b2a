package phpagent

import (
	"cmp"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/exporters/fpm"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// fpmSlowlogLine is the line of an EventFPMSlowlog.
type fpmSlowlogLine struct {
	phpFields
	Script  string             `json:"script,omitempty"`
	Seconds float64            `json:"seconds,omitempty"` // 0: the agent did not know when the request started
	Stack   []fpm.SlowlogFrame `json:"stack,omitempty"`   // innermost first, as php-fpm wrote it
}

// fpmLongLine is the line of an EventFPMLongRunning.
type fpmLongLine struct {
	phpFields
	Seconds float64    `json:"seconds"`
	Script  string     `json:"script,omitempty"`
	Worker  *fpmWorker `json:"worker,omitempty"`
	// Of the PHP agent's last progress, when it reported the request.
	Stack []string `json:"stack,omitempty"`
	CPU   float64  `json:"cpu,omitempty"`
	Mem   int64    `json:"mem,omitempty"`
}

// fpmWorker is what php-fpm's status page tells of the worker beyond the
// request fields.
type fpmWorker struct {
	State         string    `json:"state,omitempty"`
	Started       time.Time `json:"started,omitzero"` // the worker process's start
	Requests      uint64    `json:"requests,omitempty"`
	ContentLength int64     `json:"content_length,omitempty"`
	User          string    `json:"user,omitempty"`
}

// traceFPM ships php-fpm's event e about req: the PHP agent's request on
// that worker when it reported one, else what php-fpm knows.
func (a *Agent) traceFPM(e *fpm.Event, req *InflightRequest) {
	t := &a.traces
	// php-fpm's request URI carries the query string, which may hold
	// secrets; the PHP agent sends the path alone, and so do the events.
	r := *req
	r.URI, _, _ = strings.Cut(r.URI, "?")
	if r.Pool == "" && e.Slowlog != nil { // a PHP agent that does not know its pool
		r.Pool = e.Slowlog.Pool
	}
	at := e.Time
	if at.IsZero() {
		at = a.now()
	}
	base := rawtrace.Event{
		Kind: e.Kind, Level: rawtrace.LevelWarning, Priority: rawtrace.PrioritySlow, Project: r.Project, Time: at.UTC(),
		IDs: rawtrace.IDs{CorrelationID: r.CID, TraceID: r.TraceID, RequestID: r.ID},
	}
	if !t.out.Admit(r.Project, base.Priority) {
		return
	}
	fields := t.inflightFields(e.Kind, rawtrace.LevelWarning, at, &r)
	switch e.Kind {
	case EventFPMSlowlog:
		l := fpmSlowlogLine{phpFields: fields, Seconds: seconds(e.Seconds)}
		top := "unknown"
		if s := e.Slowlog; s != nil {
			l.Script, l.Stack, top = s.Script, s.Frames, s.TopFunction()
		}
		base.Summary = head(l.Endpoint, r.Method, cmp.Or(r.URI, l.Script), r.Pool, r.PID) + " php-fpm slowlog in " + top
		if l.Seconds > 0 {
			base.Summary += " after " + strconv.FormatFloat(l.Seconds, 'f', 1, 64) + "s"
		}
		t.ship(event(base, l))
	case EventFPMLongRunning:
		l := fpmLongLine{phpFields: fields, Seconds: seconds(e.Seconds), Stack: r.Stack, CPU: r.CPU, Mem: r.Memory}
		if w := e.Worker; w != nil {
			l.Script = w.Script
			l.Worker = &fpmWorker{State: w.State, Started: w.Started.UTC(), Requests: w.Requests, ContentLength: w.ContentLength, User: w.User}
		}
		base.Summary = head(l.Endpoint, r.Method, cmp.Or(r.URI, l.Script), r.Pool, r.PID) + " php-fpm long running " +
			strconv.FormatFloat(l.Seconds, 'f', 1, 64) + "s"
		t.ship(event(base, l))
	}
}
