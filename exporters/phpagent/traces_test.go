package phpagent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// collector is an Emitter that keeps what it is given.
type collector struct {
	mu     sync.Mutex
	events []rawtrace.Event
}

func (c *collector) Admit(string, rawtrace.Priority) bool { return true }

func (c *collector) Emit(e rawtrace.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

func (c *collector) take() []rawtrace.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.events
	c.events = nil
	return out
}

// newTracingAgent is a test agent shipping to a collector, on the host
// "web-9" when a message names none, at the fixed time t0.
func newTracingAgent(t testing.TB, mutate func(*Config)) (*Agent, *collector) {
	t.Helper()
	a, _ := newTestAgent(t, mutate)
	a.now = func() time.Time { return t0 }
	a.traces.hostname = "web-9"
	c := &collector{}
	a.ShipTo(c, 0)
	return a, c
}

// agentFPs fingerprints m's statements as Handle does.
func agentFPs(a *Agent, m *protocol.Message) []sqlfp.Result {
	out := make([]sqlfp.Result, len(m.SQL))
	for i, s := range m.SQL {
		c := a.fps
		if s.Cut {
			c = a.fpsCut
		}
		out[i] = c.LookupString(s.Query)
	}
	return out
}

func decodeGolden(t testing.TB, name string) *protocol.Message {
	t.Helper()
	var d protocol.Decoder
	m := &protocol.Message{}
	if err := d.Decode(golden(t, name), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// seq is a draw source returning its values in turn; it fails the test
// when drawn past them.
func seq(t *testing.T, v ...float64) func() float64 {
	return func() float64 {
		if len(v) == 0 {
			t.Fatal("drawn more often than expected")
		}
		x := v[0]
		v = v[1:]
		return x
	}
}

func TestTraceSelection(t *testing.T) {
	web := func(status int, wall float64) *protocol.Message {
		return &protocol.Message{Type: protocol.TypeEnd, SAPI: "fpm-fcgi", Method: "GET", Status: status, Wall: wall}
	}
	cli := func(exit int, has bool) *protocol.Message {
		return &protocol.Message{Type: protocol.TypeEnd, SAPI: "cli", Method: "CLI", Exit: exit, HasExit: has, Wall: 0.2}
	}
	withErr := func(typ string) *protocol.Message {
		m := web(200, 0.1)
		m.Errors = []protocol.Error{{Type: "E_NOTICE"}, {Type: typ}}
		return m
	}
	forced := web(200, 0.1)
	forced.Forced = true
	fatal := web(200, 0.1)
	fatal.Fatal = true
	all := withErr("TypeError")
	all.Wall, all.Forced = 3, true

	for _, tc := range []struct {
		name  string
		m     *protocol.Message
		rate  float64
		draws []float64
		want  []string
		level string
		prio  rawtrace.Priority
	}{
		{name: "fast and fine", m: web(200, 0.999999), want: nil},
		{name: "wall at the threshold", m: web(200, 1), want: []string{"slow"}, level: "warning", prio: rawtrace.PrioritySlow},
		{name: "status 499", m: web(499, 0.1), want: nil},
		{name: "status 500", m: web(500, 0.1), want: []string{"failed"}, level: "error", prio: rawtrace.PriorityError},
		{name: "status 503 and slow", m: web(503, 2), want: []string{"failed", "slow"}, level: "error", prio: rawtrace.PriorityError},
		{name: "fatal", m: fatal, want: []string{"failed"}, level: "error", prio: rawtrace.PriorityError},
		{name: "warnings only", m: withErr("E_WARNING"), want: nil},
		{name: "uncaught exception", m: withErr(`App\Domain\OrderNotFound`), want: []string{"failed"}, level: "error", prio: rawtrace.PriorityError},
		{name: "cli exit 0", m: cli(0, true), want: nil},
		{name: "cli exit 1", m: cli(1, true), want: []string{"failed"}, level: "error", prio: rawtrace.PriorityError},
		{name: "cli exit -1", m: cli(-1, true), want: []string{"failed"}, level: "error", prio: rawtrace.PriorityError},
		{name: "cli without exit", m: cli(0, false), want: nil},
		{name: "forced", m: forced, want: []string{"forced"}, level: "info", prio: rawtrace.PrioritySlow},
		{name: "every reason but sampled", m: all, rate: 1, want: []string{"failed", "slow", "forced"}, level: "error", prio: rawtrace.PriorityError},
		{name: "forced is not drawn", m: forced, rate: 1, want: []string{"forced"}, level: "info", prio: rawtrace.PrioritySlow},
		{name: "drawn", m: web(200, 0.1), rate: 0.25, draws: []float64{0.2499}, want: []string{"sampled"}, level: "info", prio: rawtrace.PrioritySampled},
		{name: "not drawn", m: web(200, 0.1), rate: 0.25, draws: []float64{0.25}, want: nil},
		{name: "rate 1 takes all", m: web(200, 0.1), rate: 1, draws: []float64{0.999999}, want: []string{"sampled"}, level: "info", prio: rawtrace.PrioritySampled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracer(Traces{SlowThreshold: time.Second, SampleRate: tc.rate, ProfileFunctions: 300}, discardLog)
			tr.draw = seq(t, tc.draws...)
			r := tr.reasons(tc.m)
			if got := r.names(); !slices.Equal(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
				t.Fatalf("got reasons %v; want %v", got, tc.want)
			}
			if r == 0 {
				return
			}
			if level, prio := r.level(); level != tc.level || prio != tc.prio {
				t.Errorf("got level %s, priority %s; want %s, %s", level, prio, tc.level, tc.prio)
			}
		})
	}
}

// TestTraceSampledDraw runs requests through Handle with a fixed draw
// source: those drawn below the rate are shipped as sampled, the others
// not, and a rate of 0 never draws.
func TestTraceSampledDraw(t *testing.T) {
	a, c := newTracingAgent(t, func(c *Config) { c.Traces.SampleRate = 0.1 })
	a.traces.draw = seq(t, 0.05, 0.5, 0.0999, 0.1)
	st := &readerState{}
	for i := range 4 {
		a.Handle(fmt.Appendf(nil, `{"v":1,"type":"end","id":"r%d","pid":7,"project":"shop","ts":1764294512,"method":"GET","endpoint":"GET /","started":1764294511.9,"status":200,"wall":0.1}`, i), st)
	}
	var got []string
	for _, e := range c.take() {
		got = append(got, e.IDs.RequestID)
		if e.Priority != rawtrace.PrioritySampled || e.Level != rawtrace.LevelInfo || !strings.Contains(string(e.Line), `"reasons":["sampled"]`) {
			t.Errorf("got %s %s %s; want a sampled info event", e.Priority, e.Level, e.Line)
		}
	}
	if !slices.Equal(got, []string{"r0", "r2"}) {
		t.Errorf("got sampled %v; want r0 and r2 (drawn 0.05 and 0.0999 against 0.1)", got)
	}

	a, c = newTracingAgent(t, nil)
	a.traces.draw = seq(t) // fails when drawn
	a.Handle([]byte(`{"v":1,"type":"end","id":"r","pid":7,"project":"shop","ts":1764294512,"method":"GET","endpoint":"GET /","started":1764294511.9,"status":200,"wall":0.1}`), st)
	if ev := c.take(); len(ev) != 0 {
		t.Errorf("rate 0: got %d events; want none", len(ev))
	}
}

// TestTraceHandle runs the golden end messages through Handle: shipped
// when slow, with the agent's fingerprints; nothing when no emitter is
// set.
func TestTraceHandle(t *testing.T) {
	a, _ := newTestAgent(t, func(c *Config) { c.Traces.SlowThreshold = time.Millisecond })
	st := &readerState{}
	a.Handle(golden(t, "end.json"), st) // no ShipTo: nothing built, nothing to see

	a, c := newTracingAgent(t, func(c *Config) { c.Traces.SlowThreshold = time.Millisecond })
	a.Handle(golden(t, "end.json"), st)
	a.Handle(golden(t, "end-cli.json"), st)
	ev := c.take()
	if len(ev) != 2 {
		t.Fatalf("got %d events; want the two requests", len(ev))
	}
	web, job := ev[0], ev[1]
	if web.Summary != "GET /orders/{id} 200 0.05s slow,forced" || web.IDs.RequestID != "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90" || web.IDs.CorrelationID != "0af7651916cd43dd8448eb211c80319c" || web.Project != "shop" {
		t.Errorf("got %+v; want the slow web request", web)
	}
	if job.Summary != "CLI bin/cron/reindex.php exit 0 60.25s slow" || !strings.Contains(string(job.Line), `"exit":0,`) {
		t.Errorf("got %s, %s; want the CLI run with its exit code", job.Summary, job.Line)
	}
	// The statement of end.json that took the most time in total.
	var line struct {
		SQL []struct {
			Q       string  `json:"q"`
			QueryFP string  `json:"query_fp"`
			D       float64 `json:"d"`
		} `json:"sql"`
	}
	if err := json.Unmarshal(web.Line, &line); err != nil {
		t.Fatal(err)
	}
	total := map[string]float64{}
	for _, s := range line.SQL {
		total[s.QueryFP] += s.D
	}
	for fp, d := range total {
		if d > total[web.IDs.QueryFP] {
			t.Errorf("query_fp %s took %v; %s took more, %v", web.IDs.QueryFP, total[web.IDs.QueryFP], fp, d)
		}
	}
	if !strings.Contains(string(web.Line), `"query_fp":"`+web.IDs.QueryFP+`","sql":[`) {
		t.Errorf("the line's query_fp is not the IDs' %s: %s", web.IDs.QueryFP, web.Line)
	}
}

// TestTraceNoRawSQL checks that no literal of the statements PHP sent gets
// into a line: only their normalised text does.
func TestTraceNoRawSQL(t *testing.T) {
	a, c := newTracingAgent(t, func(c *Config) { c.Traces.SlowThreshold = time.Millisecond })
	st := &readerState{}
	var raw []string
	for _, name := range []string{"end.json", "end-cli.json"} {
		a.Handle(golden(t, name), st)
		for _, s := range decodeGolden(t, name).SQL {
			raw = append(raw, s.Query)
		}
	}
	ev := c.take()
	if len(ev) != 2 {
		t.Fatalf("got %d events; want 2", len(ev))
	}
	literals := []string{"= 12345", "= 987", "'DE'", "2026-11-28", "'view'", "user:987", "IN (11", "red shoes", "'english'", "(42,", "GET%20"}
	for _, e := range ev {
		for _, l := range literals {
			if strings.Contains(string(e.Line), l) {
				t.Errorf("line holds the literal %q: %s", l, e.Line)
			}
		}
		for _, q := range raw {
			b, _ := json.Marshal(q)
			if bytes.Contains(e.Line, b) {
				t.Errorf("line holds the statement as sent, %s", b)
			}
		}
		if !strings.Contains(string(e.Line), `"q":"SELECT`) {
			t.Errorf("line has no normalised statement: %s", e.Line)
		}
	}
}

// TestTraceKinds checks what is shipped besides the golden cases: the
// agent's own long_running event stays in /api/v1/events, wall_fn is cut
// to the heaviest entries, a profile needs a call graph, and a message
// without a host gets the agent's.
func TestTraceKinds(t *testing.T) {
	a, c := newTracingAgent(t, func(c *Config) { c.LongRequestThreshold = time.Second })
	st := &readerState{}
	a.Handle([]byte(`{"v":1,"type":"start","id":"r1","pid":42,"project":"shop","ts":1764326390,"method":"GET","endpoint":"GET /report","started":1764326390}`), st)
	a.Sweep()
	if ev := a.Events(); len(ev) != 1 || ev[0].Kind != EventLongRunning {
		t.Fatalf("got events %+v; want one long_running", ev)
	}
	if ev := c.take(); len(ev) != 0 {
		t.Errorf("got %d raw traces from a long-running request; want none", len(ev))
	}

	m := &protocol.Message{Type: protocol.TypeEnd, Project: "shop", ID: "r2", PID: 7, Method: "GET", Endpoint: "GET /x", TS: 1764294512, Status: 200, Wall: 1.5, Profiler: "excimer",
		Functions: []protocol.Function{{Name: "f", Self: 1, Inclusive: 1}}}
	for i := range requestWallFunctions + 5 {
		m.WallFunctions = append(m.WallFunctions, protocol.WallEntry{Function: fmt.Sprintf("f%d", i), Seconds: float64(100 - i)})
	}
	a.traceEnd(m, nil)
	m.Profiler, m.Functions = "tideways", nil
	a.traceEnd(m, nil)
	ev := c.take()
	if len(ev) != 2 || ev[0].Kind != TraceRequest || ev[1].Kind != TraceRequest {
		t.Fatalf("got %d events; want two requests and no profile (excimer; no functions)", len(ev))
	}
	var line struct {
		Host   string `json:"host"`
		WallFn []struct {
			N string `json:"n"`
		} `json:"wall_fn"`
	}
	if err := json.Unmarshal(ev[0].Line, &line); err != nil {
		t.Fatal(err)
	}
	if len(line.WallFn) != requestWallFunctions || line.WallFn[0].N != "f0" || line.WallFn[requestWallFunctions-1].N != "f19" {
		t.Errorf("got wall_fn %v; want the first %d as sent", line.WallFn, requestWallFunctions)
	}
	if line.Host != "web-9" {
		t.Errorf("got host %q; want the agent's, web-9", line.Host)
	}

	if host, _ := os.Hostname(); newTracer(DefaultConfig().Traces, discardLog).hostname != host {
		t.Errorf("the tracer's host name is not os.Hostname()'s %q", host)
	}
	a.ShipTo(nil, 0)
	if a.traces.on || a.traces.out != rawtrace.Discard {
		t.Error("ShipTo(nil) does not fall back to Discard")
	}
}

// TestRequestEventFits: a request whose event would pass the sink's line
// limit (500 long statements, each with a long call site) is trimmed in
// the documented order until it fits, and says what it lost.
func TestRequestEventFits(t *testing.T) {
	a, c := newTracingAgent(t, nil)
	const limit = 64 << 10
	a.traces.maxLine = limit
	m := decodeGolden(t, "end.json")
	m.Wall = 5
	m.SQL = m.SQL[:0]
	m.Sites = m.Sites[:0]
	for i := 0; i < 3; i++ {
		var site []string
		for j := 0; j < 5; j++ {
			site = append(site, fmt.Sprintf("/srv/app/src/Module%d/Repository/VeryLongNameRepository%d.php:%d App\\Module%d\\Repository\\VeryLongNameRepository%d::findAllByCustomer", i, j, 100+j, i, j))
		}
		m.Sites = append(m.Sites, site)
	}
	for i := 0; i < protocol.MaxSQL; i++ {
		m.SQL = append(m.SQL, protocol.SQL{Query: fmt.Sprintf("SELECT id, customer_id, status, created_at, total_amount, currency FROM orders_%d WHERE customer_id = %d", i%7, i), Duration: 0.001, Rows: 1, Site: i % 3})
	}
	a.traceEnd(m, agentFPs(a, m))
	ev := c.take()
	if len(ev) != 1 {
		t.Fatalf("got %d events; want 1", len(ev))
	}
	if n := len(ev[0].Line); n > limit {
		t.Fatalf("line of %d bytes; want at most %d", n, limit)
	}
	var l struct {
		Truncated  []string                  `json:"truncated"`
		SQL        []struct{ Site []string } `json:"sql"`
		SQLDropped int                       `json:"sql_dropped"`
		QueryFP    string                    `json:"query_fp"`
	}
	if err := json.Unmarshal(ev[0].Line, &l); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stacks", "wall_fn", "sites"} {
		if !slices.Contains(l.Truncated, want) {
			t.Errorf("truncated %v lacks %q", l.Truncated, want)
		}
	}
	withSite := 0
	for _, s := range l.SQL {
		if len(s.Site) > 0 {
			withSite++
		}
	}
	if withSite != 3 || len(l.SQL)+l.SQLDropped != protocol.MaxSQL || l.QueryFP == "" {
		t.Errorf("kept %d statements (%d dropped), %d with a site, query_fp %q; want all %d counted, one site each of 3, the top fingerprint",
			len(l.SQL), l.SQLDropped, withSite, l.QueryFP, protocol.MaxSQL)
	}
}

// refuser is an Emitter whose rate limit is spent: it admits nothing.
type refuser struct{ collector }

func (*refuser) Admit(string, rawtrace.Priority) bool { return false }

// TestTracesAskBeforeBuilding: an event the emitter does not admit is
// neither built nor emitted.
func TestTracesAskBeforeBuilding(t *testing.T) {
	a, _ := newTracingAgent(t, nil)
	r := &refuser{}
	a.ShipTo(r, 0)
	m := decodeGolden(t, "end.json")
	m.Wall = 5
	a.traceEnd(m, agentFPs(a, m))
	a.traceAbandoned(&InflightRequest{ID: "r1", Project: "shop", PID: 7}, AbandonPIDGone, t0)
	if got := r.take(); len(got) != 0 {
		t.Errorf("%d events emitted past a refusal; want none", len(got))
	}
}

// TestForcedProfileKeptLikeSlow: the profile a developer forced is dropped
// no sooner than a slow request; a drawn one goes first.
func TestForcedProfileKeptLikeSlow(t *testing.T) {
	a, c := newTracingAgent(t, nil)
	m := decodeGolden(t, "end.json")
	m.Profiler = "tideways"
	for _, forced := range []bool{true, false} {
		m.Forced = forced
		a.traceEnd(m, agentFPs(a, m))
		want := rawtrace.PrioritySampled
		if forced {
			want = rawtrace.PrioritySlow
		}
		var got []rawtrace.Priority
		for _, e := range c.take() {
			if e.Kind == TraceProfile {
				got = append(got, e.Priority)
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("forced %v: profile priorities %v; want [%v]", forced, got, want)
		}
	}
}
