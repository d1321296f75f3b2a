package phpagent

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func newTestAgent(t testing.TB, mutate func(*Config)) (*Agent, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.CheckPIDs = false
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	a := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	return a, reg
}

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "protocol", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func TestHandleGoldenFlow(t *testing.T) {
	a, reg := newTestAgent(t, nil)
	now := time.Unix(1764294512, 0)
	a.now = func() time.Time { return now }
	st := &readerState{}

	a.Handle(golden(t, "start.json"), st)
	got := series(t, reg, "bitville_")
	if v := got[`bitville_php_requests_in_flight{endpoint=GET /orders/{id},project=shop}`]; v != 1 {
		t.Fatalf("got in flight %v after start; want 1", v)
	}
	now = now.Add(11 * time.Second)
	a.Handle(golden(t, "progress.json"), st)
	got = series(t, reg, "bitville_")
	if v := got[`bitville_php_requests_long_running{endpoint=GET /orders/{id},project=shop}`]; v != 1 {
		t.Errorf("got long running %v after 11s; want 1", v)
	}
	if in := a.Inflight(); len(in) != 1 || len(in[0].Stack) != 5 {
		t.Errorf("got in flight %+v; want one request with the progress stack", in)
	}
	a.Sweep()
	if ev := a.Events(); len(ev) != 1 || ev[0].Kind != EventLongRunning || ev[0].Request.Stack[4] != "PDOStatement::execute" {
		t.Errorf("got events %+v; want one long_running with its stack", ev)
	}

	a.Handle(golden(t, "end.json"), st)
	a.Handle(golden(t, "end-cli.json"), st)
	got = series(t, reg, "bitville_")
	checks := map[string]float64{
		`bitville_php_requests_in_flight{endpoint=GET /orders/{id},project=shop}`:                          0,
		`bitville_php_requests_total{endpoint=GET /orders/{id},method=GET,project=shop,status=2xx}`:        1,
		`bitville_php_requests_total{endpoint=CLI bin/cron/reindex.php,method=CLI,project=shop,status=ok}`: 1,
		`bitville_php_request_cpu_seconds_total{endpoint=CLI bin/cron/reindex.php,project=shop}`:           43.75,
		`bitville_agent_messages_total{reason=none,result=accepted,type=end}`:                              2,
		`bitville_agent_messages_total{reason=none,result=accepted,type=start}`:                            1,
		`bitville_agent_messages_total{reason=none,result=accepted,type=progress}`:                         1,
		`bitville_agent_unmatched_ends_total{}`:                                                            1, // the CLI run's start was not sent
		`bitville_agent_series{label=query_fp}`:                                                            11,
		`bitville_agent_sql_fingerprints_total{result=truncated}`:                                          1,
		`bitville_agent_php_truncated_messages_total{project=shop}`:                                        1,
	}
	for k, w := range checks {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: got %v (present %v); want %v", k, g, ok, w)
		}
	}
}

func TestHandleInvalidCounted(t *testing.T) {
	a, reg := newTestAgent(t, nil)
	st := &readerState{}
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "protocol", "invalid", "*.json"))
	if len(files) == 0 {
		t.Fatal("no invalid golden messages")
	}
	want := map[string]float64{}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		a.Handle(b, st)
		want[strings.SplitN(filepath.Base(f), "-", 2)[0]]++
	}
	got := map[string]float64{}
	for k, v := range series(t, reg, "bitville_agent_messages_total") {
		if strings.Contains(k, "result=invalid") {
			reason := k[strings.Index(k, "reason=")+7:]
			got[reason[:strings.IndexByte(reason, ',')]] += v
		}
	}
	for r, n := range want {
		if got[r] != n {
			t.Errorf("reason %s: got %v; want %v", r, got[r], n)
		}
	}
	if v := series(t, reg, "bitville_php_requests_total"); len(v) != 0 {
		t.Errorf("got requests from invalid messages: %v", v)
	}
}

func TestAbandonedBySupersede(t *testing.T) {
	// Without a spool an end that did not come with the next start is
	// lost: the request is abandoned at once. With one, it may still come
	// from the spool: the request waits for the grace period, then is
	// abandoned by the sweep.
	for _, spool := range []bool{false, true} {
		a, reg := newTestAgent(t, func(c *Config) {
			if !spool {
				c.SpoolDir = SpoolOff
			}
		})
		t0 := time.Unix(1764294512, 0)
		a.now = func() time.Time { return t0 }
		st := &readerState{}
		a.Handle([]byte(`{"v":1,"type":"start","id":"r1","pid":42,"project":"shop","ts":1764294512.1,"method":"GET","endpoint":"GET /stuck","started":1764294512.1}`), st)
		a.Handle([]byte(`{"v":1,"type":"start","id":"r2","pid":42,"project":"shop","ts":1764294513.1,"method":"GET","endpoint":"GET /next","started":1764294513.1,"dropped":3}`), st)
		if spool {
			a.Sweep()
			if v := series(t, reg, "bitville_php_requests_abandoned_total")[`bitville_php_requests_abandoned_total{endpoint=GET /stuck,project=shop}`]; v != 0 {
				t.Errorf("spool on: got abandoned %v within the grace period; want 0", v)
			}
			a.now = func() time.Time { return t0.Add(a.cfg.supersededGrace()) }
			a.Sweep()
		}
		got := series(t, reg, "bitville_")
		if v := got[`bitville_php_requests_abandoned_total{endpoint=GET /stuck,project=shop}`]; v != 1 {
			t.Errorf("spool %v: got abandoned %v; want 1", spool, v)
		}
		if v := got[`bitville_agent_inflight_abandoned_total{reason=superseded}`]; v != 1 {
			t.Errorf("spool %v: got superseded %v; want 1", spool, v)
		}
		if v := got[`bitville_agent_php_send_failures_total{project=shop}`]; v != 3 {
			t.Errorf("spool %v: got send failures %v; want 3", spool, v)
		}
		ev := a.Events()
		if len(ev) != 1 || ev[0].Kind != EventAbandoned || ev[0].Reason != AbandonSuperseded || ev[0].Request.ID != "r1" {
			t.Errorf("spool %v: got events %+v; want r1 abandoned as superseded", spool, ev)
		}
		if n := a.inflight.Len(); n != 1 {
			t.Errorf("spool %v: got %d in flight; want r2 only", spool, n)
		}
	}
}

// FuzzAgent feeds arbitrary datagrams through decoding and aggregation with
// tight limits: nothing may panic, and the series held stay within limits.
func FuzzAgent(f *testing.F) {
	for _, name := range []string{"start.json", "progress.json", "end.json", "end-cli.json"} {
		f.Add(golden(f, name))
	}
	f.Add([]byte(`{"v":1,"type":"end","id":"q","pid":9,"project":"p","ts":1764294512,"method":"GET","endpoint":"GET /\"quoted\"\\path\nx","started":1764294512,"wall":1,"fn":[{"n":"A\\B::c","self":0,"incl":0}]}`))
	a, reg := newTestAgent(f, func(c *Config) {
		c.Limits = Limits{Projects: 2, Endpoints: 3, Functions: 3, Queries: 3, EndpointQueries: 4, EndpointFunctions: 4, WallFunctions: 3, TopFunctions: 1, TopQueries: 1}
		c.InflightMax = 4
	})
	st := &readerState{}
	f.Fuzz(func(t *testing.T, b []byte) {
		a.Handle(b, st)
		a.Sweep()
		a.Rank()
		c := a.agg.SeriesCounts()
		if c["project"] > 3 || c["endpoint"] > 3*4 || c["function"] > 3*4 || c["query_fp"] > 3*4 || c["endpoint_query"] > 3*5 || c["function_caller"] > 3*4 {
			t.Fatalf("series beyond limits: %v", c)
		}
		if a.inflight.Len() > 4 {
			t.Fatalf("in-flight table beyond its limit: %d", a.inflight.Len())
		}
		// Whatever names were sent, the exposition must still render and parse.
		rec := httptest.NewRecorder()
		a.metricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		p := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := p.TextToMetricFamilies(rec.Body); err != nil {
			t.Fatalf("exposition does not parse after %q: %v", b, err)
		}
	})
}
