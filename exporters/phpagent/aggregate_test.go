package phpagent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promtest"
	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// newTestAggregator returns an aggregator on its own registry.
func newTestAggregator(t testing.TB, l Limits) (*Aggregator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	self := NewSelfMetrics(reg)
	return NewAggregator(l, false, self, reg), reg
}

// series is promtest.Series.
var series = promtest.Series

func fpsOf(m *protocol.Message) []sqlfp.Result {
	out := make([]sqlfp.Result, len(m.SQL))
	for i, s := range m.SQL {
		out[i] = sqlfp.Fingerprint(s.Query)
	}
	return out
}

func TestAggregateEnd(t *testing.T) {
	a, reg := newTestAggregator(t, DefaultConfig().Limits)
	m := &protocol.Message{
		Type: protocol.TypeEnd, Project: "shop", Endpoint: "GET /orders/{id}", Method: "get", Status: 503,
		Wall: 0.25, CPUUser: 0.1, CPUSys: 0.05, MemPeak: 3 << 20,
		SQL: []protocol.SQL{
			{Query: "SELECT * FROM orders WHERE id = 1", Duration: 0.01},
			{Query: "SELECT * FROM orders WHERE id = 2", Duration: 0.03},
			{Query: "UPDATE orders SET seen = true WHERE id = 2", Duration: 0.002},
		},
		Functions: []protocol.Function{{Name: "App::slow", Self: 0.2, Inclusive: 0.22}, {Name: "{main}", Self: 0.01, Inclusive: 0.25}},
		Errors:    []protocol.Error{{Type: "E_WARNING"}, {Type: "RuntimeException"}},
		Fatal:     true,
	}
	a.ApplyEnd(m, fpsOf(m), t0)
	a.ApplyEnd(m, fpsOf(m), t0)

	sel := sqlfp.Fingerprint("SELECT * FROM orders WHERE id = 1").Fingerprint
	upd := sqlfp.Fingerprint("UPDATE orders SET seen = true WHERE id = 2").Fingerprint
	got := series(t, reg, "bitville_")
	want := map[string]float64{
		`bitville_php_requests_total{endpoint=GET /orders/{id},method=GET,project=shop,status=5xx}`:   2,
		`bitville_php_request_duration_seconds_count{endpoint=GET /orders/{id},project=shop}`:         2,
		`bitville_php_request_duration_seconds_sum{endpoint=GET /orders/{id},project=shop}`:           0.5,
		`bitville_php_request_cpu_seconds_total{endpoint=GET /orders/{id},project=shop}`:              0.3,
		`bitville_php_request_memory_peak_bytes_sum{endpoint=GET /orders/{id},project=shop}`:          6 << 20,
		`bitville_php_function_self_seconds_total{function=App::slow,project=shop}`:                   0.4,
		`bitville_php_function_duration_seconds_sum{function=App::slow,project=shop}`:                 0.44,
		`bitville_php_sql_duration_seconds_count{project=shop,query_fp=` + sel + `}`:                  4,
		`bitville_php_sql_duration_seconds_sum{project=shop,query_fp=` + sel + `}`:                    0.08,
		`bitville_php_sql_calls_total{endpoint=GET /orders/{id},project=shop,query_fp=` + sel + `}`:   4,
		`bitville_php_sql_seconds_total{endpoint=GET /orders/{id},project=shop,query_fp=` + upd + `}`: 0.004,
		`bitville_php_errors_total{endpoint=GET /orders/{id},kind=warning,project=shop}`:              2,
		`bitville_php_errors_total{endpoint=GET /orders/{id},kind=exception,project=shop}`:            2,
		`bitville_php_errors_total{endpoint=GET /orders/{id},kind=fatal,project=shop}`:                2,
		`bitville_sql_query_info{query=SELECT * FROM orders WHERE id = $1,query_fp=` + sel + `}`:      1,
		`bitville_php_requests_abandoned_total{endpoint=GET /orders/{id},project=shop}`:               0,
		`bitville_agent_series_overflow_total{label=endpoint}`:                                        0,
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %s", k)
			continue
		}
		if diff := g - w; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s: got %v; want %v", k, g, w)
		}
	}
}

func TestStatusAndMethodLabels(t *testing.T) {
	tests := []struct {
		name string
		m    protocol.Message
		want string
	}{
		{"200", protocol.Message{Status: 200}, "2xx"},
		{"404", protocol.Message{Status: 404}, "4xx"},
		{"199", protocol.Message{Status: 199}, "1xx"},
		{"0 from fpm", protocol.Message{Status: 0}, "unknown"},
		{"999", protocol.Message{Status: 999}, "unknown"},
		{"cli exit 0", protocol.Message{Method: "CLI", HasExit: true}, "ok"},
		{"cli exit 3", protocol.Message{Method: "CLI", HasExit: true, Exit: 3}, "error"},
		{"cli fatal", protocol.Message{SAPI: "cli", Fatal: true}, "error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusClass(&tc.m); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
	for in, want := range map[string]string{"GET": "GET", "post": "POST", "CLI": "CLI", "PROPFIND": "other", "": "other"} {
		if got := normalizeMethod(in); got != want {
			t.Errorf("normalizeMethod(%q): got %q; want %q", in, got, want)
		}
	}
}

func TestLimitsOverflow(t *testing.T) {
	l := Limits{Projects: 2, Endpoints: 3, Functions: 4, Queries: 2, EndpointQueries: 3, EndpointFunctions: 6, TopFunctions: 2, TopQueries: 1}
	a, reg := newTestAggregator(t, l)
	for p := 0; p < 3; p++ {
		for e := 0; e < 5; e++ {
			m := &protocol.Message{Type: protocol.TypeEnd, Project: fmt.Sprintf("p%d", p), Endpoint: fmt.Sprintf("GET /e%d", e), Method: "GET", Status: 200, Wall: 1}
			for f := 0; f < 6; f++ {
				m.Functions = append(m.Functions, protocol.Function{Name: fmt.Sprintf("f%d", f), Self: 1, Inclusive: 1})
			}
			for q := 0; q < 3; q++ {
				m.SQL = append(m.SQL, protocol.SQL{Query: fmt.Sprintf("SELECT * FROM t%d WHERE x = %d", q, e), Duration: 1})
			}
			a.ApplyEnd(m, fpsOf(m), t0)
		}
	}
	counts := a.SeriesCounts()
	// 2 projects + other; per project 3 endpoints + other, 4 functions + other, 2 queries + other.
	want := map[string]int{"project": 3, "endpoint": 12, "function": 15, "query_fp": 9, "function_histogram": 6, "query_histogram": 3}
	for k, w := range want {
		if counts[k] != w {
			t.Errorf("%s: got %d; want %d", k, counts[k], w)
		}
	}
	got := series(t, reg, "bitville_")
	// Nothing is lost: every request is counted somewhere.
	var total float64
	for k, v := range got {
		if strings.HasPrefix(k, "bitville_php_requests_total{") {
			total += v
		}
	}
	if total != 15 {
		t.Errorf("got %v requests in total; want 15", total)
	}
	if v := got[`bitville_php_requests_total{endpoint=GET /e4,method=GET,project=p0,status=2xx}`]; v != 0 {
		t.Errorf("got a series for an endpoint past the limit")
	}
	if v := got[`bitville_php_requests_total{endpoint=other,method=GET,project=p0,status=2xx}`]; v != 2 {
		t.Errorf("got %v requests of p0 in endpoint other; want 2", v)
	}
	var inOther float64
	for k, v := range got {
		if strings.HasPrefix(k, "bitville_php_requests_total{") && strings.Contains(k, "project=other") {
			inOther += v
		}
	}
	if inOther != 5 {
		t.Errorf("got %v requests in project other; want 5 (p2 past the project limit)", inOther)
	}
	if v := got[`bitville_php_function_self_seconds_total{function=other,project=p0}`]; v != 10 {
		t.Errorf("got %v self seconds in function other; want 10 (f4, f5 × 5 requests)", v)
	}
	if v := got[`bitville_agent_series_overflow_total{label=project}`]; v != 5 {
		t.Errorf("got %v project overflows; want 5", v)
	}
	for k := range got {
		if strings.HasPrefix(k, "bitville_php_function_duration_seconds_count{function=other") {
			t.Errorf("got a duration histogram for the overflow function: %s", k)
		}
	}
	// By endpoint: the same self time, in at most 6 pairs of its own per
	// project plus (endpoint, other) pairs past the limit.
	var epSelf float64
	own := 0
	for k, v := range got {
		if strings.HasPrefix(k, "bitville_php_endpoint_function_self_seconds_total{") && strings.HasSuffix(k, "project=p0}") {
			epSelf += v
			if !strings.Contains(k, "function=other") {
				own++
			}
		}
	}
	if epSelf != 30 {
		t.Errorf("got %v self seconds by endpoint in p0; want 30 (5 requests × 6 functions)", epSelf)
	}
	if own > 6 || got[`bitville_php_endpoint_function_self_seconds_total{endpoint=GET /e0,function=f0,project=p0}`] != 1 {
		t.Errorf("got %d (endpoint, function) pairs of their own in p0 (want ≤ 6), e0/f0 = %v (want 1)",
			own, got[`bitville_php_endpoint_function_self_seconds_total{endpoint=GET /e0,function=f0,project=p0}`])
	}
	if v := got[`bitville_agent_series_overflow_total{label=endpoint_function}`]; v == 0 {
		t.Errorf("no endpoint_function overflow counted")
	}
}

// Only each request's heaviest functions are counted by endpoint.
func TestEndpointFunctionsTopOfEachRequest(t *testing.T) {
	a, reg := newTestAggregator(t, DefaultConfig().Limits)
	m := &protocol.Message{Type: protocol.TypeEnd, Project: "p", Endpoint: "GET /r", Method: "GET", Status: 200}
	for f := 0; f < EndpointFunctionsPerRequest+5; f++ { // heaviest first, as the protocol sends them
		m.Functions = append(m.Functions, protocol.Function{Name: fmt.Sprintf("f%02d", f), Self: float64(100 - f), Inclusive: 100})
	}
	a.ApplyEnd(m, nil, t0)
	got := series(t, reg, "bitville_php_endpoint_function")
	if len(got) != EndpointFunctionsPerRequest {
		t.Fatalf("got %d series; want %d: %v", len(got), EndpointFunctionsPerRequest, got)
	}
	last := fmt.Sprintf("bitville_php_endpoint_function_self_seconds_total{endpoint=GET /r,function=f%02d,project=p}", EndpointFunctionsPerRequest-1)
	if got[last] != float64(100-EndpointFunctionsPerRequest+1) {
		t.Errorf("%s = %v; want %d", last, got[last], 100-EndpointFunctionsPerRequest+1)
	}
}

func TestRankMovesHistograms(t *testing.T) {
	l := DefaultConfig().Limits
	l.TopFunctions, l.TopQueries = 1, 1
	a, reg := newTestAggregator(t, l)
	apply := func(fn string, self float64) {
		m := &protocol.Message{Type: protocol.TypeEnd, Project: "p", Endpoint: "GET /", Method: "GET", Status: 200,
			Functions: []protocol.Function{{Name: fn, Self: self, Inclusive: self}}}
		a.ApplyEnd(m, nil, t0)
	}
	apply("cheap", 0.001) // first seen: gets the only histogram
	apply("heavy", 5)
	has := func(fn string) bool {
		_, ok := series(t, reg, "bitville_php_function_duration")[`bitville_php_function_duration_seconds_count{function=`+fn+`,project=p}`]
		return ok
	}
	if !has("cheap") || has("heavy") {
		t.Fatalf("before ranking: got cheap %v heavy %v; want only cheap", has("cheap"), has("heavy"))
	}
	a.Rank()
	// heavy is now first; cheap is second, inside 2·K, so it keeps its histogram.
	if !has("heavy") || !has("cheap") {
		t.Fatalf("after ranking: got heavy %v cheap %v; want both", has("heavy"), has("cheap"))
	}
	apply("heavier", 50)
	a.Rank()
	// cheap is third now, outside 2·K = 2: its histogram goes.
	if has("cheap") || !has("heavier") {
		t.Errorf("after second ranking: got cheap %v heavier %v; want cheap gone, heavier present", has("cheap"), has("heavier"))
	}
	if got := a.SeriesCounts()["function_histogram"]; got != 2 {
		t.Errorf("got %d function histograms; want 2", got)
	}
}

func TestExpire(t *testing.T) {
	a, reg := newTestAggregator(t, DefaultConfig().Limits)
	old := &protocol.Message{Type: protocol.TypeEnd, Project: "p", Endpoint: "GET /old", Method: "GET", Status: 200,
		SQL: []protocol.SQL{{Query: "SELECT 1", Duration: 0.1}}, Functions: []protocol.Function{{Name: "f", Self: 1, Inclusive: 1}}}
	a.ApplyEnd(old, fpsOf(old), t0)
	busy := &protocol.Message{Type: protocol.TypeEnd, Project: "p", Endpoint: "GET /busy", Method: "GET", Status: 200}
	a.ApplyEnd(busy, nil, t0)
	fresh := &protocol.Message{Type: protocol.TypeEnd, Project: "p", Endpoint: "GET /fresh", Method: "GET", Status: 200}
	a.ApplyEnd(fresh, nil, t0.Add(time.Hour))

	a.Expire(t0.Add(time.Minute), map[endpointKey]InflightCounts{{"p", "GET /busy"}: {InFlight: 1}})
	got := series(t, reg, "bitville_")
	for k := range got {
		if strings.Contains(k, "GET /old") || strings.Contains(k, "function=f,") || strings.HasPrefix(k, "bitville_sql_query_info") {
			t.Errorf("got %s after expiry; want it removed", k)
		}
	}
	for _, k := range []string{
		`bitville_php_requests_total{endpoint=GET /busy,method=GET,project=p,status=2xx}`,
		`bitville_php_requests_total{endpoint=GET /fresh,method=GET,project=p,status=2xx}`,
		`bitville_agent_series_expired_total{label=endpoint}`,
	} {
		if _, ok := got[k]; !ok {
			t.Errorf("missing %s after expiry", k)
		}
	}
	if v := got[`bitville_agent_series_expired_total{label=endpoint}`]; v != 1 {
		t.Errorf("got %v expired endpoints; want 1", v)
	}
	// The expired endpoint comes back when it is used again.
	a.ApplyEnd(old, fpsOf(old), t0.Add(2*time.Hour))
	if _, ok := series(t, reg, "bitville_php_requests_total")[`bitville_php_requests_total{endpoint=GET /old,method=GET,project=p,status=2xx}`]; !ok {
		t.Errorf("expired endpoint did not come back")
	}
}

func TestFunctionWallSeconds(t *testing.T) {
	a, reg := newTestAggregator(t, DefaultConfig().Limits)
	m := &protocol.Message{Type: protocol.TypeEnd, Project: "shop", Endpoint: "GET /cart", Method: "GET", Status: 200, Wall: 2,
		WallFunctions: []protocol.WallEntry{
			{Function: "session_start", Caller: `App\Controller\CartController::show`, Seconds: 1.25},
			{Function: "->get", Caller: `App\Cache::fetch`, Seconds: 0.5},
			{Function: `App\Cart::total`, Caller: `App\Controller\CartController::show`, Seconds: 0.125},
			{Function: "{main}", Seconds: 0.0625},
		}}
	a.ApplyEnd(m, nil, t0)
	a.ApplyEnd(m, nil, t0)
	got := series(t, reg, "bitville_php_function_wall_seconds_total")
	want := map[string]float64{
		`bitville_php_function_wall_seconds_total{caller=App\Controller\CartController::show,function=session_start,project=shop}`:   2.5,
		`bitville_php_function_wall_seconds_total{caller=App\Cache::fetch,function=->get,project=shop}`:                              1,
		`bitville_php_function_wall_seconds_total{caller=App\Controller\CartController::show,function=App\Cart::total,project=shop}`: 0.25,
		`bitville_php_function_wall_seconds_total{caller=,function={main},project=shop}`:                                             0.125,
	}
	if len(got) != len(want) {
		t.Errorf("got %d series; want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: got %v (present %v); want %v", k, g, ok, w)
		}
	}
	// Wall time is not CPU time: the self-time family is left alone.
	if got := series(t, reg, "bitville_php_function_self_seconds_total"); len(got) != 0 {
		t.Errorf("got self-time series from wall entries: %v", got)
	}
	if got := a.SeriesCounts()["function_caller"]; got != 4 {
		t.Errorf("got %d (function, caller) pairs held; want 4", got)
	}
}

func TestFunctionWallOverflow(t *testing.T) {
	l := DefaultConfig().Limits
	l.Projects, l.WallFunctions = 2, 3
	a, reg := newTestAggregator(t, l)
	for p := 0; p < 2; p++ {
		m := &protocol.Message{Type: protocol.TypeEnd, Project: fmt.Sprintf("p%d", p), Endpoint: "GET /", Method: "GET", Status: 200}
		for f := 0; f < 5; f++ {
			// the same function from two callers is two pairs
			m.WallFunctions = append(m.WallFunctions, protocol.WallEntry{Function: fmt.Sprintf("f%d", f/2), Caller: fmt.Sprintf("c%d", f%2), Seconds: 1})
		}
		a.ApplyEnd(m, nil, t0)
	}
	got := series(t, reg, "bitville_")
	for p := 0; p < 2; p++ {
		var total float64
		own := 0
		for k, v := range got {
			if strings.HasPrefix(k, "bitville_php_function_wall_seconds_total{") && strings.HasSuffix(k, fmt.Sprintf("project=p%d}", p)) {
				total += v
				if !strings.Contains(k, "caller=other,function=other,") {
					own++
				}
			}
		}
		if total != 5 || own != 3 {
			t.Errorf("p%d: got %v wall seconds in %d pairs of their own; want 5 in 3 (nothing lost, the limit kept)", p, total, own)
		}
		if v := got[fmt.Sprintf("bitville_php_function_wall_seconds_total{caller=other,function=other,project=p%d}", p)]; v != 2 {
			t.Errorf("p%d: got %v wall seconds in (other, other); want 2", p, v)
		}
	}
	if v := got[`bitville_agent_series_overflow_total{label=function_caller}`]; v != 4 {
		t.Errorf("got %v function_caller overflows; want 4 (2 per project)", v)
	}
	// The overflow pair is held beside the limit's own pairs.
	if got := a.SeriesCounts()["function_caller"]; got != 8 {
		t.Errorf("got %d (function, caller) pairs held; want 8 (3 + other per project)", got)
	}
}

func TestFunctionWallExpire(t *testing.T) {
	a, reg := newTestAggregator(t, DefaultConfig().Limits)
	wall := func(fn string, at time.Time) {
		m := &protocol.Message{Type: protocol.TypeEnd, Project: "p", Endpoint: "GET /", Method: "GET", Status: 200,
			WallFunctions: []protocol.WallEntry{{Function: fn, Caller: "App::run", Seconds: 1}}}
		a.ApplyEnd(m, nil, at)
	}
	wall("fread", t0)
	wall("usleep", t0.Add(time.Hour))
	a.Expire(t0.Add(time.Minute), nil)
	got := series(t, reg, "bitville_")
	if _, ok := got[`bitville_php_function_wall_seconds_total{caller=App::run,function=fread,project=p}`]; ok {
		t.Errorf("got the idle pair's series after expiry; want it removed")
	}
	if v := got[`bitville_php_function_wall_seconds_total{caller=App::run,function=usleep,project=p}`]; v != 1 {
		t.Errorf("got %v for the fresh pair; want 1", v)
	}
	if v := got[`bitville_agent_series_expired_total{label=function_caller}`]; v != 1 {
		t.Errorf("got %v expired function_caller pairs; want 1", v)
	}
	if got := a.SeriesCounts()["function_caller"]; got != 1 {
		t.Errorf("got %d pairs held; want 1", got)
	}
	// A project whose only series are wall pairs stays while they do.
	a.Expire(t0.Add(30*time.Minute), nil)
	if a.SeriesCounts()["project"] != 1 {
		t.Errorf("project expired while its wall pair is fresh")
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name string
		e    protocol.Error
		want string
	}{
		{"memory_limit", protocol.Error{Type: "E_ERROR", Message: "Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)"}, "memory_limit"},
		{"other fatal", protocol.Error{Type: "E_ERROR", Message: "Maximum execution time of 30 seconds exceeded"}, "error"},
		{"memory text inside a message", protocol.Error{Type: "E_ERROR", Message: "Fatal: Allowed memory size of 1 bytes"}, "error"},
		{"memory text in a warning", protocol.Error{Type: "E_WARNING", Message: "Allowed memory size of 1 bytes"}, "warning"},
		{"exception", protocol.Error{Type: "RuntimeException", Message: "Allowed memory size of 1 bytes"}, "exception"},
		{"notice", protocol.Error{Type: "E_NOTICE"}, "notice"},
		{"deprecated", protocol.Error{Type: "E_USER_DEPRECATED"}, "deprecated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorKind(&tc.e); got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
		})
	}
}

// A request that died of memory_limit counts kind memory_limit (not error)
// and fatal, as any fatal.
func TestMemoryLimitFatal(t *testing.T) {
	a, reg := newTestAggregator(t, DefaultConfig().Limits)
	m := &protocol.Message{Type: protocol.TypeEnd, Project: "shop", Endpoint: "GET /export", Method: "GET", Status: 500, Fatal: true,
		Errors: []protocol.Error{{Type: "E_ERROR", Message: "Allowed memory size of 134217728 bytes exhausted (tried to allocate 20480 bytes)", File: "/srv/app/Export.php", Line: 42}}}
	a.ApplyEnd(m, nil, t0)
	got := series(t, reg, "bitville_php_errors_total")
	want := map[string]float64{
		`bitville_php_errors_total{endpoint=GET /export,kind=memory_limit,project=shop}`: 1,
		`bitville_php_errors_total{endpoint=GET /export,kind=fatal,project=shop}`:        1,
	}
	if len(got) != len(want) {
		t.Errorf("got %v; want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %v; want %v", k, got[k], w)
		}
	}
}
