package phpagent

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// requestWallFunctions is how many wall_fn entries (the heaviest) a request
// event keeps: where the worker waited, without the long tail.
const requestWallFunctions = 20

// requestLine is the line of a TraceRequest event.
type requestLine struct {
	phpFields
	Reasons       []string    `json:"reasons"`
	Status        int         `json:"status,omitempty"`
	Exit          *int        `json:"exit,omitempty"` // CLI runs; 0 is shown
	Wall          float64     `json:"wall"`
	CPU           float64     `json:"cpu,omitempty"` // user + system
	MemPeak       int64       `json:"mem_peak,omitempty"`
	Fatal         bool        `json:"fatal,omitempty"`
	SQLCount      int         `json:"sql_count,omitempty"`
	SQLSeconds    float64     `json:"sql_seconds,omitempty"`
	SQLDropped    int64       `json:"sql_dropped,omitempty"`
	QueryFP       string      `json:"query_fp,omitempty"` // of the statement that took the most time
	SQL           []sqlLine   `json:"sql,omitempty"`
	Errors        []errorLine `json:"errors,omitempty"`
	ErrorsDropped int64       `json:"errors_dropped,omitempty"`
	Profiler      string      `json:"profiler,omitempty"`
	Period        float64     `json:"period,omitempty"`
	Stacks        []stackLine `json:"stacks,omitempty"`
	WallFn        []wallLine  `json:"wall_fn,omitempty"`
	Truncated     []string    `json:"truncated,omitempty"`
}

// sqlLine is one statement: its normalised text, never the text PHP sent,
// which may hold literal values.
type sqlLine struct {
	Q       string   `json:"q"`
	QueryFP string   `json:"query_fp"`
	D       float64  `json:"d"`
	Rows    *int64   `json:"rows,omitempty"` // nil when unknown; 0 rows is shown
	Err     bool     `json:"err,omitempty"`
	Trunc   bool     `json:"trunc,omitempty"`
	Site    []string `json:"site,omitempty"`
}

type errorLine struct {
	Type string `json:"type"`
	Msg  string `json:"msg,omitempty"`
	File string `json:"file,omitempty"`
	Line int64  `json:"line,omitempty"`
}

type stackLine struct {
	S string `json:"s"`
	N int64  `json:"n"`
}

type wallLine struct {
	N string  `json:"n"`
	C string  `json:"c,omitempty"`
	S float64 `json:"s"`
}

// messageFields are the common fields of an end message's events.
func (t *tracer) messageFields(kind, level string, m *protocol.Message) phpFields {
	return phpFields{
		Kind: kind, Time: messageTime(m.TS), Level: level,
		Project: m.Project, Host: t.host(m.Host), Pool: m.Pool, PID: m.PID,
		RequestID: m.ID, CorrelationID: m.CID, TraceID: m.TraceID,
		SAPI: m.SAPI, Method: m.Method, Endpoint: m.Endpoint, URI: m.URI,
	}
}

// messageTime is a message's timestamp in UTC, to the microsecond: the
// float seconds PHP sends hold no more, and the nanoseconds a conversion
// invents would only be noise in the line.
func messageTime(ts float64) time.Time {
	return time.UnixMicro(int64(math.Round(ts * 1e6))).UTC()
}

// requestEvent builds the request event of m, shipped for reasons r. fps
// are the fingerprints of m.SQL, in order.
func requestEvent(t *tracer, m *protocol.Message, fps []sqlfp.Result, r reasons) (rawtrace.Event, error) {
	level, prio := r.level()
	l := requestLine{
		phpFields:     t.messageFields(TraceRequest, level, m),
		Reasons:       r.names(),
		Status:        m.Status,
		Wall:          m.Wall,
		CPU:           seconds(m.CPUUser + m.CPUSys),
		MemPeak:       m.MemPeak,
		Fatal:         m.Fatal,
		SQLCount:      len(m.SQL),
		SQLDropped:    m.SQLDropped,
		ErrorsDropped: m.ErrorsDropped,
		Profiler:      m.Profiler,
		Period:        m.Period,
		Truncated:     m.Truncated,
	}
	if m.HasExit {
		l.Exit = &m.Exit
	}
	if len(fps) == len(m.SQL) { // always, from Handle; a mismatch ships no SQL rather than wrong fingerprints
		l.SQL, l.SQLSeconds, l.QueryFP = sqlLines(m, fps)
	}
	if len(m.Errors) > 0 {
		l.Errors = make([]errorLine, len(m.Errors))
		for i, e := range m.Errors {
			l.Errors[i] = errorLine{Type: e.Type, Msg: e.Message, File: e.File, Line: e.Line}
		}
	}
	if len(m.Stacks) > 0 {
		l.Stacks = make([]stackLine, len(m.Stacks))
		for i, s := range m.Stacks {
			l.Stacks[i] = stackLine{S: s.Frames, N: s.Samples}
		}
	}
	if n := min(len(m.WallFunctions), requestWallFunctions); n > 0 {
		l.WallFn = make([]wallLine, n)
		for i, w := range m.WallFunctions[:n] { // heaviest first, as sent
			l.WallFn[i] = wallLine{N: w.Function, C: w.Caller, S: w.Seconds}
		}
	}
	e, err := event(rawtrace.Event{
		Kind: TraceRequest, Level: level, Priority: prio, Project: m.Project, Time: l.Time,
		Summary: requestSummary(m, l.Reasons),
		IDs:     rawtrace.IDs{CorrelationID: m.CID, TraceID: m.TraceID, RequestID: m.ID, QueryFP: l.QueryFP},
	}, l)
	if err == nil && t.maxLine > 0 && len(e.Line) > t.maxLine {
		e.Line, err = requestFit(&l, e.Line, t.maxLine)
	}
	return e, err
}

// requestFit trims l until its line is at most max bytes, in this order,
// naming each step in truncated: the stacks, the wall entries, the call
// site of every statement but the first from each site, the errors, then
// the statements from the last (counted in sql_dropped). Identity, timing
// and the statement that took the most time stay. It is the rare path of
// a request with hundreds of long statements.
func requestFit(l *requestLine, b []byte, max int) ([]byte, error) {
	l.Truncated = slices.Clone(l.Truncated)
	steps := []struct {
		name string
		cut  func() bool
	}{
		{"stacks", func() bool { l.Stacks = nil; return false }},
		{"wall_fn", func() bool { l.WallFn = nil; return false }},
		{"sites", func() bool { dedupSites(l.SQL); return false }},
		{"errors", func() bool { l.Errors = nil; return false }},
		{"sql", func() bool {
			n := len(l.SQL) / 2
			l.SQLDropped += int64(len(l.SQL) - n)
			l.SQL = l.SQL[:n]
			return n > 0 // again, halving, while statements are left
		}},
	}
	for _, s := range steps {
		for {
			before := len(b)
			again := s.cut()
			var err error
			if b, err = json.Marshal(l); err != nil {
				return nil, err
			}
			if len(b) < before && !slices.Contains(l.Truncated, s.name) {
				// The step cut something: say so (the line grows by
				// the name, a few bytes; measured again below).
				l.Truncated = append(l.Truncated, s.name)
				if b, err = json.Marshal(l); err != nil {
					return nil, err
				}
			}
			if len(b) <= max {
				return b, nil
			}
			if !again {
				break
			}
		}
	}
	return b, nil // too large still: the pipeline drops it, counted as too_large
}

// dedupSites keeps a call site on the first statement run from it only.
func dedupSites(sql []sqlLine) {
	seen := make(map[string]bool)
	for i := range sql {
		k := strings.Join(sql[i].Site, "\n")
		if seen[k] {
			sql[i].Site = nil
		}
		seen[k] = true
	}
}

// sqlLines copies m's statements with their fingerprints, and returns their
// total time and the fingerprint that took the most of it (the first to
// run among equals).
func sqlLines(m *protocol.Message, fps []sqlfp.Result) (out []sqlLine, total float64, top string) {
	if len(m.SQL) == 0 {
		return nil, 0, ""
	}
	out = make([]sqlLine, len(m.SQL))
	byFP := make(map[string]float64, len(m.SQL))
	for i, s := range m.SQL {
		fp := fps[i].Fingerprint
		out[i] = sqlLine{Q: fps[i].Normalized, QueryFP: fp, D: s.Duration, Err: s.Error, Trunc: s.Cut}
		if s.Rows >= 0 {
			out[i].Rows = &m.SQL[i].Rows
		}
		if s.Site >= 0 && s.Site < len(m.Sites) {
			out[i].Site = m.Sites[s.Site]
		}
		total += s.Duration
		byFP[fp] += s.Duration
	}
	best := -1.0
	for _, s := range out {
		if d := byFP[s.QueryFP]; d > best {
			top, best = s.QueryFP, d
		}
	}
	return out, seconds(total), top
}

// requestSummary is the request's one human line:
// "GET /orders/{id} 500 2.31s slow,failed".
func requestSummary(m *protocol.Message, reasons []string) string {
	var b strings.Builder
	b.WriteString(head(m.Endpoint, m.Method, m.URI, m.Pool, m.PID))
	switch {
	case m.Status > 0:
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(m.Status))
	case m.HasExit:
		b.WriteString(" exit ")
		b.WriteString(strconv.Itoa(m.Exit))
	}
	b.WriteByte(' ')
	b.WriteString(strconv.FormatFloat(m.Wall, 'f', 2, 64))
	b.WriteString("s ")
	b.WriteString(strings.Join(reasons, ","))
	return b.String()
}

// profileLine is the line of a TraceProfile event.
type profileLine struct {
	phpFields
	Profiler         string         `json:"profiler"`
	Wall             float64        `json:"wall"`
	CPU              float64        `json:"cpu,omitempty"`
	Functions        []functionLine `json:"functions"`
	FunctionsDropped int            `json:"functions_dropped,omitempty"`
}

type functionLine struct {
	N     string  `json:"n"`
	Self  float64 `json:"self"`
	Incl  float64 `json:"incl"`
	Calls int64   `json:"calls,omitempty"` // 0: the profiler does not count calls
}

// profilePriority is a profile's: a drawn request's goes first when events
// must be dropped, one a developer forced is kept like a slow request.
func profilePriority(m *protocol.Message) rawtrace.Priority {
	if m.Forced {
		return rawtrace.PrioritySlow
	}
	return rawtrace.PrioritySampled
}

// profileEvent builds the profile event of m: its functions, heaviest self
// time first, at most events.profile-functions of them.
func profileEvent(t *tracer, m *protocol.Message) (rawtrace.Event, error) {
	fns := make([]functionLine, len(m.Functions))
	for i, f := range m.Functions {
		fns[i] = functionLine{N: f.Name, Self: f.Self, Incl: f.Inclusive, Calls: f.Calls}
	}
	slices.SortStableFunc(fns, func(a, b functionLine) int { return cmp.Compare(b.Self, a.Self) })
	n := min(len(fns), t.maxFns)
	l := profileLine{
		phpFields:        t.messageFields(TraceProfile, rawtrace.LevelInfo, m),
		Profiler:         m.Profiler,
		Wall:             m.Wall,
		CPU:              seconds(m.CPUUser + m.CPUSys),
		Functions:        fns[:n],
		FunctionsDropped: len(fns) - n,
	}
	return event(rawtrace.Event{
		Kind: TraceProfile, Level: rawtrace.LevelInfo, Priority: profilePriority(m), Project: m.Project, Time: l.Time,
		Summary: head(m.Endpoint, m.Method, m.URI, m.Pool, m.PID) + " profile (" + m.Profiler + ") " +
			strconv.FormatFloat(m.Wall, 'f', 2, 64) + "s, " + strconv.Itoa(len(fns)) + " functions",
		IDs: rawtrace.IDs{CorrelationID: m.CID, TraceID: m.TraceID, RequestID: m.ID},
	}, l)
}
