package phpagent

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/exporters/fpm"
	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// collector is an Emitter that keeps what it is given.
type collector struct {
	mu     sync.Mutex
	events []rawtrace.Event
}

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
	a.ShipTo(c)
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
	if web.Summary != "GET /orders/{id} 200 0.05s slow" || web.IDs.RequestID != "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90" || web.IDs.CorrelationID != "0af7651916cd43dd8448eb211c80319c" || web.Project != "shop" {
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

// goldenRequest is end.json cut to four statements, turned into a slow
// failed request with call sites, a trace id and an uncaught exception.
func goldenRequest(t testing.TB) *protocol.Message {
	m := decodeGolden(t, "end.json")
	m.Status, m.Wall = 500, 2.31
	m.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	m.SQL = m.SQL[:4]
	m.Sites = [][]string{
		{"/srv/shop/app/Models/Order.php:42 App\\Models\\Order::findFirst", "/srv/shop/app/Controllers/OrdersController.php:17 App\\Controllers\\OrdersController::showAction"},
		{"/srv/shop/app/Services/Tax.php:30 App\\Services\\Tax::forCountry"},
	}
	m.SQL[0].Site, m.SQL[2].Site, m.SQL[3].Site = 0, 0, 1
	m.SQL[1].Rows = -1
	m.SQL[1].Site = 7 // out of range: no site
	m.SQL[3].Error, m.SQL[3].Duration = true, 0.9
	m.Errors = append(m.Errors, protocol.Error{Type: "App\\Tax\\RateMissing", Message: "no tax rate for DE", File: "/srv/shop/app/Services/Tax.php", Line: 31})
	m.ErrorsDropped = 2
	m.Truncated = append(m.Truncated, "errors")
	return m
}

func TestTraceGolden(t *testing.T) {
	a, c := newTracingAgent(t, func(c *Config) {
		c.Traces.ProfileFunctions = 3
		c.SpoolDir = SpoolOff // a superseded request is abandoned at once
	})
	st := &readerState{}

	m := goldenRequest(t)
	a.traceEnd(m, agentFPs(a, m))
	req := c.take()
	if len(req) != 1 {
		t.Fatalf("got %d events; want the request", len(req))
	}
	checkEvent(t, req[0], rawtrace.Event{Kind: "request", Level: "error", Priority: rawtrace.PriorityError, Project: "shop",
		Summary: "GET /orders/{id} 500 2.31s failed,slow",
		IDs:     rawtrace.IDs{CorrelationID: "0af7651916cd43dd8448eb211c80319c", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90", QueryFP: sqlfp.Fingerprint(m.SQL[3].Query).Fingerprint}},
		"request.json")

	m = decodeGolden(t, "end.json")
	m.Profiler, m.Functions = "xhprof", m.Functions[:5]
	m.Functions[3].Calls = 12
	a.traceEnd(m, agentFPs(a, m))
	prof := c.take()
	if len(prof) != 1 {
		t.Fatalf("got %d events; want the profile", len(prof))
	}
	checkEvent(t, prof[0], rawtrace.Event{Kind: "profile", Level: "info", Priority: rawtrace.PrioritySampled, Project: "shop",
		Summary: "GET /orders/{id} profile (xhprof) 0.05s, 5 functions",
		IDs:     rawtrace.IDs{CorrelationID: "0af7651916cd43dd8448eb211c80319c", RequestID: "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90"}},
		"profile.json")

	at := func(sec float64) { a.now = func() time.Time { return messageTime(sec) } }
	at(1764294512.5)
	a.Handle([]byte(`{"v":1,"type":"start","id":"r1","pid":42,"project":"shop","ts":1764294512.5,"host":"web-1","pool":"www","cid":"c-1","method":"GET","uri":"/report","endpoint":"GET /report","started":1764294512.5}`), st)
	at(1764294542.5)
	a.Handle([]byte(`{"v":1,"type":"progress","id":"r1","pid":42,"project":"shop","ts":1764294542.5,"elapsed":30,"stack":["{main}","App\\Report::build","PDOStatement::execute"],"mem":52428800,"cpu":1.25,"seq":6}`), st)
	at(1764294543.5)
	a.Handle([]byte(`{"v":1,"type":"start","id":"r2","pid":42,"project":"shop","ts":1764294543.5,"method":"GET","endpoint":"GET /next","started":1764294543.5}`), st)
	ab := c.take()
	if len(ab) != 1 {
		t.Fatalf("got %d events; want the abandoned request", len(ab))
	}
	checkEvent(t, ab[0], rawtrace.Event{Kind: "abandoned", Level: "error", Priority: rawtrace.PriorityError, Project: "shop",
		Summary: "GET /report abandoned (superseded) after 31.0s",
		IDs:     rawtrace.IDs{CorrelationID: "c-1", RequestID: "r1"}},
		"abandoned.json")

	a.now = func() time.Time { return t0 }
	if _, err := a.inflight.Start(startMsg(26788, "req-7", "GET /report", t0.Add(-5*time.Second)), "GET /report", t0); err != nil {
		t.Fatal(err)
	}
	r, _ := a.FPMRequest(26788)
	entry := &fpm.SlowlogEntry{Time: t0, Pool: "www", PID: 26788, Script: "/srv/shop/public/index.php",
		Frames: []fpm.SlowlogFrame{{Function: "sleep", File: "/srv/shop/app/Report.php", Line: 14}, {Function: "App\\Report::build", File: "/srv/shop/public/index.php", Line: 9}}}
	a.EmitFPM(fpm.Event{Kind: fpm.EventSlowlog, Time: t0, Seconds: 5, Request: r, Slowlog: entry})
	slow := c.take()
	if len(slow) != 1 {
		t.Fatalf("got %d events; want the slowlog entry", len(slow))
	}
	checkEvent(t, slow[0], rawtrace.Event{Kind: "fpm_slowlog", Level: "warning", Priority: rawtrace.PrioritySlow, Project: "shop",
		Summary: "GET /report php-fpm slowlog in sleep after 5.0s",
		IDs:     rawtrace.IDs{RequestID: "req-7"}},
		"fpm_slowlog.json")

	w := &fpm.Worker{PID: 4242, State: "Running", Started: t0.Add(-time.Hour), Requests: 310, RequestSeconds: 31, Method: "POST",
		URI: "/checkout?token=secret", Script: "/srv/shop/public/index.php", User: "-"}
	a.EmitFPM(fpm.Event{Kind: fpm.EventLongRunning, Time: t0, Seconds: 31, Worker: w,
		Request: fpm.Request{Pool: "www", PID: 4242, Method: "POST", URI: "/checkout?token=secret", Started: t0.Add(-31 * time.Second), LastSeen: t0}})
	long := c.take()
	if len(long) != 1 {
		t.Fatalf("got %d events; want the long-running worker", len(long))
	}
	checkEvent(t, long[0], rawtrace.Event{Kind: "fpm_long_running", Level: "warning", Priority: rawtrace.PrioritySlow,
		Summary: "POST /checkout php-fpm long running 31.0s"},
		"fpm_long_running.json")
	if strings.Contains(string(long[0].Line), "secret") {
		t.Errorf("the query string got into the line: %s", long[0].Line)
	}
}

// checkEvent compares e with want but for the line, which it compares with
// the golden file testdata/events/name (-update rewrites it), then checks
// its field names against the schema.
func checkEvent(t *testing.T, e, want rawtrace.Event, name string) {
	t.Helper()
	line := e.Line
	var head struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		t.Fatalf("%s: the line does not decode: %v\n%s", name, err, line)
	}
	want.Time, want.Line = head.Time, line
	if !e.Time.Equal(want.Time) || e.Time.Location() != time.UTC {
		t.Errorf("%s: got time %v; want the line's, %v, in UTC", name, e.Time, want.Time)
	}
	e.Time = want.Time
	if got, _ := json.Marshal(e); !bytes.Equal(got, mustJSON(t, want)) {
		t.Errorf("%s: got event\n%s\nwant\n%s", name, got, mustJSON(t, want))
	}
	path := filepath.Join("testdata", "events", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(slices.Clone(line), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gold, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestTraceGolden -update to create it)", err)
	}
	if !bytes.Equal(bytes.TrimSuffix(gold, []byte("\n")), line) {
		t.Errorf("%s differs from the golden line (rerun with -update if the change is intended):\ngot:  %s\nwant: %s", name, line, gold)
	}
	checkSchema(t, name, line)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
	a.ShipTo(nil)
	if a.traces.on || a.traces.out != rawtrace.Discard {
		t.Error("ShipTo(nil) does not fall back to Discard")
	}
}
