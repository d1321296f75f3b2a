package phpagent

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/exporters/fpm"
	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

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
		Summary: "GET /orders/{id} 500 2.31s failed,slow,forced",
		IDs:     rawtrace.IDs{CorrelationID: "0af7651916cd43dd8448eb211c80319c", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90", QueryFP: sqlfp.Fingerprint(m.SQL[3].Query).Fingerprint}},
		"request.json")

	m = decodeGolden(t, "end.json")
	m.Profiler, m.Functions = "xhprof", m.Functions[:5]
	m.Forced = false // only the profile: a forced request would be shipped too
	m.Functions[3].Calls = 12
	a.traceEnd(m, agentFPs(a, m))
	prof := c.take()
	if len(prof) != 1 {
		t.Fatalf("got %d events; want the profile", len(prof))
	}
	checkEvent(t, prof[0], rawtrace.Event{Kind: "profile", Level: "info", Priority: rawtrace.PrioritySampled, Project: "shop",
		Summary: "GET /orders/{id} profile (xhprof) 0.05s, 5 functions",
		IDs:     rawtrace.IDs{CorrelationID: "0af7651916cd43dd8448eb211c80319c", TraceID: "0af7651916cd43dd8448eb211c80319c", RequestID: "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90"}},
		"profile.json")

	at := func(sec float64) { a.now = func() time.Time { return messageTime(sec) } }
	at(1764294512.5)
	a.Handle([]byte(`{"v":1,"type":"start","id":"r1","pid":42,"project":"shop","ts":1764294512.5,"host":"web-1","pool":"www","sapi":"fpm-fcgi","cid":"c-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","method":"GET","uri":"/report","endpoint":"GET /report","started":1764294512.5}`), st)
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
		IDs:     rawtrace.IDs{CorrelationID: "c-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", RequestID: "r1"}},
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

// The field names of docs/raw-traces.md, by kind: what a line may hold and
// what it must. Nested lists name the fields of their elements.
var (
	schemaCommon = []string{"kind", "time", "level", "project", "host", "pool", "pid", "request_id", "correlation_id", "trace_id", "sapi", "method", "endpoint", "uri"}
	schemaFields = map[string][]string{
		"request": {"reasons", "status", "exit", "wall", "cpu", "mem_peak", "fatal", "sql_count", "sql_seconds", "sql_dropped", "query_fp",
			"sql", "errors", "errors_dropped", "profiler", "period", "stacks", "wall_fn", "truncated"},
		"abandoned":   {"reason", "seconds", "elapsed", "stack", "cpu", "mem"},
		"profile":     {"profiler", "wall", "cpu", "functions", "functions_dropped"},
		"fpm_slowlog": {"script", "seconds", "stack"},
		// The status page's worker, and the PHP agent's last progress when
		// it reported the request.
		"fpm_long_running": {"seconds", "script", "worker", "stack", "cpu", "mem"},
	}
	schemaRequired = map[string][]string{
		"request":          {"reasons", "wall"},
		"abandoned":        {"reason", "seconds"},
		"profile":          {"profiler", "wall", "functions"},
		"fpm_slowlog":      {"pool", "pid"},
		"fpm_long_running": {"pool", "pid", "seconds"},
	}
	schemaElements = map[string][]string{
		"request.sql":             {"q", "query_fp", "d", "rows", "err", "trunc", "site"},
		"request.errors":          {"type", "msg", "file", "line"},
		"request.stacks":          {"s", "n"},
		"request.wall_fn":         {"n", "c", "s"},
		"profile.functions":       {"n", "self", "incl", "calls"},
		"fpm_slowlog.stack":       {"function", "file", "line"},
		"fpm_long_running.worker": {"state", "started", "requests", "content_length", "user"},
	}
)

// checkSchema decodes line and checks its field names against the schema
// of its kind.
func checkSchema(t *testing.T, name string, line []byte) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(line, &obj); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	kind, _ := obj["kind"].(string)
	allowed, ok := schemaFields[kind]
	if !ok {
		t.Fatalf("%s: unknown kind %q", name, kind)
	}
	for _, f := range append([]string{"kind", "time", "level"}, schemaRequired[kind]...) {
		if _, ok := obj[f]; !ok {
			t.Errorf("%s: lacks %s", name, f)
		}
	}
	for f, v := range obj {
		if !slices.Contains(schemaCommon, f) && !slices.Contains(allowed, f) {
			t.Errorf("%s: field %q is not in the schema of %s", name, f, kind)
		}
		fields, nested := schemaElements[kind+"."+f]
		var elems []any
		switch v := v.(type) {
		case []any:
			elems = v
		case map[string]any:
			elems = []any{v}
		}
		for _, e := range elems {
			o, isObj := e.(map[string]any)
			if nested != isObj {
				t.Errorf("%s: %s holds %T", name, f, e)
				continue
			}
			for k := range o {
				if !slices.Contains(fields, k) {
					t.Errorf("%s: field %s.%s is not in the schema", name, f, k)
				}
			}
		}
	}
}
