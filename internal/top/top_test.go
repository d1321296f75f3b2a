package top

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/logql"
	"github.com/bitville/bitville-apm/internal/promapi"
)

var (
	to   = time.Unix(1_800_000_000, 0)
	from = to.Add(-10 * time.Minute)
)

// fake is a Prometheus answering by substrings of the query: window
// answers at the window's end, baseline answers at the baseline's end.
type fake struct {
	php, pg, up float64
	host        float64
	window      map[string]string // query substring → vector JSON result
	baseline    map[string]string
	queries     []string
}

func (f *fake) handler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		f.queries = append(f.queries, q)
		at := r.URL.Query().Get("time")
		count := func(v float64) string {
			if v == 0 {
				return `[]`
			}
			return fmt.Sprintf(`[{"metric":{},"value":[0,"%g"]}]`, v)
		}
		result := `[]`
		switch {
		case strings.HasPrefix(q, "count(last_over_time(bitville_php_requests_total"):
			result = count(f.php)
		case strings.HasPrefix(q, "count(last_over_time(bitville_pg_up"):
			result = count(f.pg)
		case strings.HasPrefix(q, "count(last_over_time(up"):
			result = count(f.up)
		case strings.HasPrefix(q, "count(last_over_time(bitville_host_process_cpu_seconds_total"):
			result = count(f.host)
		default:
			m := f.baseline
			if at == fmt.Sprintf("%d.000", to.Unix()) {
				m = f.window
			}
			for sub, res := range m {
				if strings.Contains(q, sub) {
					result = res
				}
			}
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
	}
}

func sample(v float64, labels ...string) string {
	var l []string
	for i := 0; i+1 < len(labels); i += 2 {
		l = append(l, fmt.Sprintf("%q:%q", labels[i], labels[i+1]))
	}
	return fmt.Sprintf(`{"metric":{%s},"value":[0,"%g"]}`, strings.Join(l, ","), v)
}

func vec(samples ...string) string { return "[" + strings.Join(samples, ",") + "]" }

func run(t *testing.T, f *fake, o Options) (*Report, error) {
	t.Helper()
	srv := httptest.NewServer(f.handler(t))
	t.Cleanup(srv.Close)
	c, err := promapi.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if o.From.IsZero() {
		o.From, o.To, o.Baseline, o.Limit = from, to, time.Hour, 5
	}
	return Run(context.Background(), c, o)
}

func TestRankingAndVerdict(t *testing.T) {
	f := &fake{php: 3, pg: 1, up: 4,
		window: map[string]string{
			"bitville_php_request_cpu_seconds_total":   vec(sample(1.9, "project", "shop", "endpoint", "GET /report"), sample(0.1, "project", "shop", "endpoint", "GET /cheap")),
			"bitville_php_request_duration_seconds":    vec(sample(2.0, "project", "shop", "endpoint", "GET /report"), sample(0.2, "project", "shop", "endpoint", "GET /cheap")),
			"bitville_php_function_self_seconds":       vec(sample(1.8, "project", "shop", "function", `App\Pricing::recalculate`), sample(0.05, "project", "shop", "function", "main")),
			"bitville_php_sql_seconds_total{}[600s]))": vec(sample(0.3, "query_fp", "aaaaaaaaaaaaaaaa"), sample(0.01, "query_fp", "other")),
			"bitville_pg_session_samples_total":        vec(sample(0.2, "query_fp", "aaaaaaaaaaaaaaaa", "wait_event_type", "CPU", "wait_event", "CPU")),
			"bitville_sql_query_info":                  vec(sample(1, "query_fp", "aaaaaaaaaaaaaaaa", "query", "SELECT sku FROM products")),
			"topk by (query_fp)":                       vec(sample(0.3, "query_fp", "aaaaaaaaaaaaaaaa", "endpoint", "GET /report")),
		},
		baseline: map[string]string{
			"bitville_php_request_cpu_seconds_total": vec(sample(0.1, "project", "shop", "endpoint", "GET /report"), sample(0.1, "project", "shop", "endpoint", "GET /cheap")),
			"bitville_php_request_duration_seconds":  vec(sample(0.1, "project", "shop", "endpoint", "GET /report"), sample(0.2, "project", "shop", "endpoint", "GET /cheap")),
			"bitville_php_function_self_seconds":     vec(sample(0.1, "project", "shop", "function", `App\Pricing::recalculate`)),
		},
	}
	r, err := run(t, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Endpoints) != 1 || r.Endpoints[0].Name != "GET /report" || r.Endpoints[0].Score < 3.6 || r.Endpoints[0].Score > 3.8 {
		t.Errorf("endpoints: %+v (GET /cheap did not grow and must not be listed)", r.Endpoints)
	}
	if len(r.Functions) != 2 || r.Functions[0].Name != `App\Pricing::recalculate` {
		t.Errorf("functions: %+v", r.Functions)
	}
	if len(r.Queries) != 1 || r.Queries[0].Name != "SELECT sku FROM products" || r.Queries[0].TopEndpoint != "GET /report" || r.Queries[0].Score != 0.3 {
		t.Errorf("queries: %+v (other is not a query)", r.Queries)
	}
	if len(r.Waits) != 1 || r.Waits[0].Name != "CPU/CPU" {
		t.Errorf("waits: %+v", r.Waits)
	}
	if want := "CPU in PHP: GET /report uses 1.80 more cores, most of it in App\\Pricing::recalculate."; r.Verdict != want {
		t.Errorf("verdict %q; want %q", r.Verdict, want)
	}
	// The window and the baseline were asked for with their own ranges.
	var sawWindow, sawBaseline bool
	for _, q := range f.queries {
		sawWindow = sawWindow || strings.Contains(q, "[600s]")
		sawBaseline = sawBaseline || strings.Contains(q, "[3600s]")
	}
	if !sawWindow || !sawBaseline {
		t.Errorf("ranges: window %v baseline %v", sawWindow, sawBaseline)
	}
	var b bytes.Buffer
	if err := r.Table(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if n := len([]rune(line)); n > width {
			t.Errorf("a line of %d columns: %q", n, line)
		}
	}
	for _, want := range []string{"GET /report", `App\Pricing::recalculate`, "SELECT sku FROM products <- GET /report", "CPU/CPU", "Verdict: CPU in PHP"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestVerdicts(t *testing.T) {
	for _, tc := range []struct {
		r    Report
		want string
	}{
		{Report{Waits: []Wait{{Name: "Lock/transactionid", WaitEventType: "Lock", Score: 3}}, Queries: []Query{{Name: "UPDATE t SET x = $1", Score: 3, TopEndpoint: "POST /pay"}}},
			"Lock contention: 3.0 more database sessions wait on Lock/transactionid; the statement they run: UPDATE t SET x = $1 (from POST /pay)."},
		{Report{Endpoints: []Endpoint{{Name: "GET /stuck", Score: 4, Window: EndpointFigures{InFlight: 4, Abandoned: 12}}}},
			"Stuck requests: GET /stuck holds 4.0 more workers in flight, and 12.0 of its requests a minute are killed before they finish."},
		// A few abandoned among many finished (lost end messages) do not
		// make a slow query's endpoint "stuck".
		{Report{Endpoints: []Endpoint{{Name: "GET /slow", Score: 3.5, Window: EndpointFigures{InFlight: 3.5, Abandoned: 9.5, Requests: 2.7}}},
			Queries: []Query{{Name: "SELECT pg_sleep($1)", Score: 3.8, Window: QueryFigures{PHP: 3.4, Sessions: 3.8}, TopEndpoint: "GET /slow"}}},
			"Slow SQL: SELECT pg_sleep($1) (from GET /slow) grew by 3.40 s/s in PHP and 3.80 active sessions in the database."},
		{Report{Queries: []Query{{QueryFP: "abcdabcdabcdabcd", Score: 2, Window: QueryFigures{PHP: 2, Sessions: 1.5}}}},
			"Slow SQL: query abcdabcdabcdabcd grew by 2.00 s/s in PHP and 1.50 active sessions in the database."},
		{Report{Endpoints: []Endpoint{{Name: "GET /x", Score: 2, Window: EndpointFigures{Wall: 2}}}},
			"Busy workers: GET /x keeps 2.0 more workers busy."},
		{Report{}, "No clear offender: nothing grew by more than the noise between the baseline and the window."},
	} {
		if got, _ := verdict(&tc.r); got != tc.want {
			t.Errorf("got %q\nwant %q", got, tc.want)
		}
	}
}

// The verdicts on waiting functions, processes and memory, and where each
// stands among the others.
func TestVerdictPrecedence(t *testing.T) {
	cart := Endpoint{Name: "GET /cart", Score: 3.3, Window: EndpointFigures{CPU: 0.15, Wall: 3.4}, Baseline: EndpointFigures{CPU: 0.1, Wall: 0.2}}
	session := Function{Name: "session_start", Caller: `App\Cart::show`, Score: 3.1, Window: FunctionFigures{Wall: 3.2}, Baseline: FunctionFigures{Wall: 0.1}}
	// GET /report on 4 workers and 2 cores: its wall time is twice its
	// CPU time, spent in the run queue.
	report := Endpoint{Name: "GET /report", Score: 5.8, Window: EndpointFigures{CPU: 1.95, Wall: 4}, Baseline: EndpointFigures{CPU: 0.05, Wall: 0.1}}
	recalc := Function{Name: `App\Pricing::recalculate`, Score: 5.6, Window: FunctionFigures{Self: 1.8, CPU: 1.8, Wall: 3.8}}
	bvbackup := Process{Name: "bvbackup", Group: "other", Score: 1.8, Window: ProcessFigures{CPU: 1.9, Running: 2}, Baseline: ProcessFigures{CPU: 0.1}}
	export := Memory{Name: "GET /export", Score: 4.6, Window: MemoryFigures{PeakBytes: 180 * mib, MemoryLimit: 3, measured: true}, Baseline: MemoryFigures{PeakBytes: 20 * mib, measured: true}}
	lock := Wait{Name: "Lock/transactionid", WaitEventType: "Lock", Score: 3}
	for name, tc := range map[string]struct {
		r    Report
		want string
	}{
		"waiting function": {Report{Endpoints: []Endpoint{cart}, Functions: []Function{session}},
			`Workers wait in session_start() called from App\Cart::show: GET /cart keeps 3.2 more workers busy.`},
		"a method of an unknown class, from top-level code": {Report{Endpoints: []Endpoint{cart}, Functions: []Function{{Name: "->get", Score: 3, Window: FunctionFigures{Wall: 3}}}},
			"Workers wait in ->get(): GET /cart keeps 3.2 more workers busy."},
		"lock contention wins over a waiting function": {Report{Waits: []Wait{lock}, Endpoints: []Endpoint{cart}, Functions: []Function{session}},
			"Lock contention: 3.0 more database sessions wait on Lock/transactionid."},
		"slow SQL wins over a waiting function": {Report{Queries: []Query{{Name: "SELECT pg_sleep($1)", Score: 3.2, Window: QueryFigures{PHP: 3.2, Sessions: 3}}},
			Endpoints: []Endpoint{cart}, Functions: []Function{{Name: "PDOStatement::execute", Score: 3.2, Window: FunctionFigures{Wall: 3.2}}}},
			"Slow SQL: SELECT pg_sleep($1) grew by 3.20 s/s in PHP and 3.00 active sessions in the database."},
		"a small query does not hide a long wait": {Report{Queries: []Query{{Name: "SELECT 1", Score: 0.2, Window: QueryFigures{PHP: 0.2}}},
			Endpoints: []Endpoint{cart}, Functions: []Function{session}},
			`Workers wait in session_start() called from App\Cart::show: GET /cart keeps 3.2 more workers busy.`},
		// Wall time in a CPU-bound function is no wait; the CPU verdict
		// names the function that grew most in CPU, not in wall time.
		"cpu in PHP on saturated cores": {Report{Endpoints: []Endpoint{report}, Functions: []Function{session, recalc}},
			`CPU in PHP: GET /report uses 1.90 more cores, most of it in App\Pricing::recalculate.`},
		// GET /report in the end-to-end stack: 4 workers, 2 cores, requests
		// in flight for seconds; its CPU spread over many functions.
		"cpu in PHP when the CPU is spread": {Report{Endpoints: []Endpoint{{Name: "GET /report", Score: 4.56, Window: EndpointFigures{CPU: 0.66, InFlight: 3.89}}},
			Functions: []Function{{Name: `App\Pricing::recalculate`, Score: 3.7, Window: FunctionFigures{CPU: 0.29, Wall: 3.4}}}},
			`CPU in PHP: GET /report uses 0.66 more cores, most of it in App\Pricing::recalculate.`},
		"load 200 on 16 cores": {Report{Endpoints: []Endpoint{{Name: "GET /report", Score: 216, Window: EndpointFigures{CPU: 16, Wall: 200}}},
			Functions: []Function{{Name: `App\Pricing::recalculate`, Score: 190, Window: FunctionFigures{CPU: 13, Wall: 177}}, {Name: `App\Tax::rate`, Score: 23.5, Window: FunctionFigures{CPU: 1.5, Wall: 22}}}},
			`CPU in PHP: GET /report uses 16.00 more cores, most of it in App\Pricing::recalculate.`},
		"a waiting user function that uses a little CPU": {Report{Endpoints: []Endpoint{{Name: "GET /partner", Score: 3, Window: EndpointFigures{CPU: 0.03, Wall: 3}}},
			Functions: []Function{{Name: `App\Partner::fetch`, Caller: `App\Controller::partner`, Score: 3, Window: FunctionFigures{CPU: 0.03, Wall: 3}}}},
			`Workers wait in App\Partner::fetch() called from App\Controller::partner: GET /partner keeps 3.0 more workers busy.`},
		"busy workers when no function waits": {Report{Endpoints: []Endpoint{cart}, Functions: []Function{{Name: "main", Score: 0.2, Window: FunctionFigures{CPU: 0.1, Wall: 0.1}}}},
			"Busy workers: GET /cart keeps 3.2 more workers busy."},
		"a non-PHP process wins over a small PHP growth": {Report{Endpoints: []Endpoint{{Name: "GET /cheap", Score: 0.3, Window: EndpointFigures{Wall: 0.4}, Baseline: EndpointFigures{Wall: 0.1}}},
			Processes: []Process{{Name: "php-fpm8.2", Group: "php", Score: 2}, bvbackup}, phpGrowth: 0.3, groupGrowth: map[string]float64{"postgres": 0.2}},
			"Not PHP: bvbackup uses 1.9 cores."},
		"a non-PHP process wins over lock contention that grew less": {Report{Waits: []Wait{{Name: "Lock/tuple", WaitEventType: "Lock", Score: 1}},
			Processes: []Process{bvbackup}, phpGrowth: 1, groupGrowth: map[string]float64{}},
			"Not PHP: bvbackup uses 1.9 cores."},
		"tasks in D state": {Report{Processes: []Process{{Name: "rsync", Group: "other", Score: 12, Window: ProcessFigures{Uninterruptible: 12}}}},
			"Not PHP: rsync has 12.0 more tasks in uninterruptible sleep (D)."},
		"PHP grew more than the process": {Report{Endpoints: []Endpoint{report}, Functions: []Function{recalc}, Processes: []Process{bvbackup}, phpGrowth: 5.8},
			`CPU in PHP: GET /report uses 1.90 more cores, most of it in App\Pricing::recalculate.`},
		"PostgreSQL grew more than the process": {Report{Endpoints: []Endpoint{cart}, Functions: []Function{session}, Processes: []Process{{Name: "postgres", Group: "postgres", Score: 2.5}, bvbackup},
			phpGrowth: 1, groupGrowth: map[string]float64{"postgres": 2.5}},
			`Workers wait in session_start() called from App\Cart::show: GET /cart keeps 3.2 more workers busy.`},
		"memory_limit when nothing else": {Report{Memory: []Memory{export}},
			"Memory: 3.0 requests a minute of GET /export die of memory_limit, and its peak memory per request grew from 20.0 MiB to 180.0 MiB."},
		"peak memory when nothing else": {Report{Memory: []Memory{{Name: "GET /export", Score: 1.6, Window: MemoryFigures{PeakBytes: 180 * mib, measured: true}, Baseline: MemoryFigures{PeakBytes: 20 * mib, measured: true}}}},
			"Memory: GET /export: its peak memory per request grew from 20.0 MiB to 180.0 MiB."},
		"busy workers win over memory": {Report{Endpoints: []Endpoint{cart}, Memory: []Memory{export}},
			"Busy workers: GET /cart keeps 3.2 more workers busy."},
	} {
		if got, _ := verdict(&tc.r); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, tc.want)
		}
	}
	if got := call("Redis::get"); got != "Redis::get()" {
		t.Errorf("call: %s", got)
	}
}

func TestMissingAndNoData(t *testing.T) {
	_, err := run(t, &fake{}, Options{})
	if !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "no samples") {
		t.Errorf("an empty Prometheus: %v", err)
	}
	_, err = run(t, &fake{up: 2}, Options{})
	if !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "neither the agent") {
		t.Errorf("no Bitville metrics: %v", err)
	}
	r, err := run(t, &fake{php: 1, up: 2}, Options{})
	var me *MissingError
	if !errors.As(err, &me) || r == nil || !strings.Contains(err.Error(), "pg-exporter") || len(r.Warnings) != 1 {
		t.Errorf("no pg-exporter: %v, %+v", err, r)
	}
	r, err = run(t, &fake{pg: 1, up: 2}, Options{})
	if !errors.As(err, &me) || r == nil || !strings.Contains(err.Error(), "the agent") || r.Endpoints != nil {
		t.Errorf("no agent: %v, %+v", err, r)
	}
}

func TestOptions(t *testing.T) {
	ok := Options{From: from, To: to, Baseline: time.Hour, Limit: 5}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Options){
		"reversed":   func(o *Options) { o.From, o.To = o.To, o.From },
		"baseline 0": func(o *Options) { o.Baseline = 0 },
		"limit 0":    func(o *Options) { o.Limit = 0 },
		"no start":   func(o *Options) { o.From = time.Time{} },
	} {
		o := ok
		mutate(&o)
		if o.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := (Options{Project: "shop", Instance: "web.*"}).phpSel(`query_fp=~"a"`); got != `{project=~"shop",instance=~"web.*",query_fp=~"a"}` {
		t.Errorf("phpSel: %s", got)
	}
}

// Functions rank by growth of wall time plus growth of CPU: a blocking
// call with no CPU of its own comes first, with the user function that
// made it; the verdict says the workers wait in it.
func TestFunctionsByWallAndCPU(t *testing.T) {
	const (
		self   = "sum by (project, function) ((rate(bitville_php_function_self_seconds_total"
		wall   = "sum by (project, function) ((rate(bitville_php_function_wall_seconds_total"
		caller = "topk by (project, function) (1, sum by (project, function, caller)"
	)
	f := &fake{php: 2, pg: 1, up: 3,
		window: map[string]string{
			"bitville_php_request_cpu_seconds_total": vec(sample(0.15, "project", "shop", "endpoint", "GET /cart")),
			"bitville_php_request_duration_seconds":  vec(sample(3.4, "project", "shop", "endpoint", "GET /cart")),
			self:                                     vec(sample(0.12, "project", "shop", "function", `App\Cart::show`), sample(0.6, "project", "shop", "function", `App\Pricing::recalculate`)),
			wall:                                     vec(sample(3.2, "project", "shop", "function", "session_start"), sample(0.6, "project", "shop", "function", `App\Pricing::recalculate`), sample(0.1, "project", "shop", "function", "->get")),
			caller: vec(sample(3.1, "project", "shop", "function", "session_start", "caller", `App\Cart::show`),
				sample(0.6, "project", "shop", "function", `App\Pricing::recalculate`, "caller", `App\Controller\Report::index`)),
		},
		baseline: map[string]string{
			"bitville_php_request_cpu_seconds_total": vec(sample(0.1, "project", "shop", "endpoint", "GET /cart")),
			"bitville_php_request_duration_seconds":  vec(sample(0.2, "project", "shop", "endpoint", "GET /cart")),
			self:                                     vec(sample(0.1, "project", "shop", "function", `App\Cart::show`), sample(0.5, "project", "shop", "function", `App\Pricing::recalculate`)),
			wall:                                     vec(sample(0.1, "project", "shop", "function", "session_start"), sample(0.5, "project", "shop", "function", `App\Pricing::recalculate`), sample(0.1, "project", "shop", "function", "->get")),
		},
	}
	r, err := run(t, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fn := range r.Functions {
		got = append(got, fmt.Sprintf("%s %.2f %q", fn.Name, fn.Score, fn.Caller))
	}
	// ->get did not grow: not listed.
	want := []string{`session_start 3.10 "App\\Cart::show"`, `App\Pricing::recalculate 0.20 "App\\Controller\\Report::index"`, `App\Cart::show 0.02 ""`}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("functions:\n got %v\nwant %v", got, want)
	}
	if fn := r.Functions[1]; fn.Window != (FunctionFigures{Self: 0.6, CPU: 0.6, Wall: 0.6}) || fn.Baseline != (FunctionFigures{Self: 0.5, CPU: 0.5, Wall: 0.5}) {
		t.Errorf("figures of %s: window %+v, baseline %+v", fn.Name, fn.Window, fn.Baseline)
	}
	if want := `Workers wait in session_start() called from App\Cart::show: GET /cart keeps 3.2 more workers busy.`; r.Verdict != want {
		t.Errorf("verdict %q; want %q", r.Verdict, want)
	}
	// The caller was asked for the ranked functions only, each name
	// matched literally.
	var asked string
	for _, q := range f.queries {
		if strings.Contains(q, caller) {
			asked = q
		}
	}
	if !strings.Contains(asked, `function=~"session_start|App\\\\Pricing::recalculate|App\\\\Cart::show"`) || !strings.Contains(asked, "[600s]") {
		t.Errorf("the caller query: %s", asked)
	}
	// JSON: the new figures and caller; processes and memory are empty
	// arrays, not null.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"caller":"App\\Cart::show"`, `"self_seconds_per_second":0.6,"cpu_seconds_per_second":0.6,"wall_seconds_per_second":0.6`,
		`"processes":[]`, `"memory":[]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the JSON lacks %s:\n%s", want, b)
		}
	}
	var tb bytes.Buffer
	if err := r.Table(&tb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FUNCTIONS (baseline->window)          score  CPU s/s       busy workers\n  session_start",
		"0.00->0.00    0.10->3.20\n    called from App\\Cart::show\n", "PROCESSES (baseline->window)          score  cores         running       D tasks\n  (no host metrics",
		"MEMORY (baseline->window)             score  peak MiB      memory_limit/min\n  (nothing grew)"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, tb.String())
		}
	}
}

// Processes rank by growth of cores plus growth of tasks in D state, from
// the host collector of the selected instances; memory ranks endpoints by
// memory_limit deaths and peak memory.
func TestProcessesAndMemory(t *testing.T) {
	const (
		cpu     = "bitville_host_process_cpu_seconds_total"
		running = `state="running"`
		dstate  = `state="uninterruptible"`
		peak    = "bitville_php_request_memory_peak_bytes_sum"
		killed  = `kind="memory_limit"`
	)
	f := &fake{php: 2, pg: 1, up: 3, host: 40,
		window: map[string]string{
			"bitville_php_request_cpu_seconds_total": vec(sample(0.1, "project", "shop", "endpoint", "GET /cheap")),
			"bitville_php_request_duration_seconds":  vec(sample(0.4, "project", "shop", "endpoint", "GET /cheap")),
			cpu: vec(sample(1.9, "name", "bvbackup", "group", "other"), sample(0.4, "name", "php-fpm8.2", "group", "php"),
				sample(0.3, "name", "postgres", "group", "postgres"), sample(0.9, "name", "other", "group", "other"),
				sample(0.02, "name", "kworker", "group", "kernel")),
			running: vec(sample(2, "name", "bvbackup", "group", "other"), sample(0.5, "name", "php-fpm8.2", "group", "php")),
			dstate:  vec(sample(1, "name", "bvbackup", "group", "other"), sample(0.3, "name", "kworker", "group", "kernel")),
			peak:    vec(sample(180*mib, "project", "shop", "endpoint", "GET /export"), sample(2*mib, "project", "shop", "endpoint", "GET /cheap"), sample(50*mib, "project", "shop", "endpoint", "CLI bin/once.php")),
			killed:  vec(sample(3, "project", "shop", "endpoint", "GET /export")),
		},
		baseline: map[string]string{
			"bitville_php_request_cpu_seconds_total": vec(sample(0.1, "project", "shop", "endpoint", "GET /cheap")),
			"bitville_php_request_duration_seconds":  vec(sample(0.2, "project", "shop", "endpoint", "GET /cheap")),
			cpu: vec(sample(0.1, "name", "bvbackup", "group", "other"), sample(0.3, "name", "php-fpm8.2", "group", "php"),
				sample(0.3, "name", "postgres", "group", "postgres"), sample(0.1, "name", "other", "group", "other")),
			running: vec(sample(0.1, "name", "bvbackup", "group", "other"), sample(0.5, "name", "php-fpm8.2", "group", "php")),
			peak:    vec(sample(20*mib, "project", "shop", "endpoint", "GET /export"), sample(2*mib, "project", "shop", "endpoint", "GET /cheap")),
		},
	}
	r, err := run(t, f, Options{From: from, To: to, Baseline: time.Hour, Limit: 5, Instance: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Processes {
		got = append(got, fmt.Sprintf("%s/%s %.2f", p.Group, p.Name, p.Score))
	}
	// other/other is the sum past the collector's top names: not ranked;
	// postgres did not grow.
	want := []string{"other/bvbackup 2.80", "kernel/kworker 0.32", "php/php-fpm8.2 0.10"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("processes:\n got %v\nwant %v", got, want)
	}
	if p := r.Processes[0]; p.Window != (ProcessFigures{CPU: 1.9, Running: 2, Uninterruptible: 1}) || p.Baseline != (ProcessFigures{CPU: 0.1, Running: 0.1}) {
		t.Errorf("figures of bvbackup: window %+v, baseline %+v", p.Window, p.Baseline)
	}
	if want := "Not PHP: bvbackup uses 1.9 cores, and 1.0 more of its tasks are in uninterruptible sleep (D)."; r.Verdict != want {
		t.Errorf("verdict %q; want %q", r.Verdict, want)
	}
	got = nil
	for _, m := range r.Memory {
		got = append(got, fmt.Sprintf("%s %.2f", m.Name, m.Score))
	}
	// 3 deaths a minute + 160 MiB / 100 MiB; GET /cheap did not grow, and
	// CLI bin/once.php did not run in the baseline.
	if want := []string{"GET /export 4.60"}; strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("memory: got %v; want %v", got, want)
	}
	for _, q := range f.queries {
		if strings.Contains(q, "bitville_host_") && !strings.Contains(q, `{instance=~"web1"`) {
			t.Errorf("a host query without the instance filter: %s", q)
		}
	}
	var tb bytes.Buffer
	if err := r.Table(&tb); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(tb.String(), "\n") {
		if n := len([]rune(line)); n > width {
			t.Errorf("a line of %d columns: %q", n, line)
		}
	}
	for _, want := range []string{"  bvbackup (other)                     +2.80  0.10->1.90    0.10->2.00    0.00->1.00\n",
		"  GET /export                          +4.60  20.0->180.0   0.00->3.00\n"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, tb.String())
		}
	}
}

// The verdict's culprit comes with the LogQL search of its raw traces,
// none for a process outside PHP.
func TestVerdictLogQL(t *testing.T) {
	report := Endpoint{Name: "GET /report", Project: "shop", Score: 2, Window: EndpointFigures{CPU: 2}}
	for _, tc := range []struct {
		name string
		r    Report
		want string
	}{
		{"cpu", Report{Endpoints: []Endpoint{report}}, logql.SlowestRequests(logql.Is("shop"), logql.Is("GET /report"))},
		{"function", Report{Endpoints: []Endpoint{{Name: "GET /cart", Project: "shop", Score: 3, Window: EndpointFigures{Wall: 3}}},
			Functions: []Function{{Name: "session_start", Score: 3, Window: FunctionFigures{Wall: 3}}}},
			logql.SlowestRequests(logql.Is("shop"), logql.Is("GET /cart"))},
		{"query", Report{Queries: []Query{{QueryFP: "abcdabcdabcdabcd", Score: 2, Window: QueryFigures{PHP: 2}}}},
			logql.RequestsOfQuery(logql.Is(""), logql.Is("abcdabcdabcdabcd"))},
		{"stuck", Report{Endpoints: []Endpoint{{Name: "GET /stuck", Project: "shop", Score: 4, Window: EndpointFigures{InFlight: 4, Abandoned: 12}}}},
			logql.Abandoned(logql.Is("shop"), logql.Is("GET /stuck"))},
		{"locks", Report{Waits: []Wait{{Name: "Lock/transactionid", WaitEventType: "Lock", Score: 3}}}, logql.LockTrees(logql.Is(""), logql.Is(""))},
		{"memory", Report{Memory: []Memory{{Name: "GET /export", Project: "shop", Score: 2, Window: MemoryFigures{MemoryLimit: 2}}}},
			logql.FailedRequests(logql.Is("shop"), logql.Is("GET /export"))},
		{"process", Report{Processes: []Process{{Name: "bvbackup", Group: groupOther, Score: 2, Window: ProcessFigures{CPU: 2}}}}, ""},
		{"nothing", Report{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := verdict(&tc.r)
			if got != tc.want {
				t.Errorf("got %q; want %q", got, tc.want)
			}
			if got != "" {
				if err := logql.Check(got); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// The table prints the search under the verdict, broken only between the
// query's words, and the JSON carries it whole as logql.
func TestLogQLLine(t *testing.T) {
	q := logql.SlowestRequests(logql.Is("shop"), logql.Is("GET /a very long endpoint name/{with}/{several}/{parameters}"))
	r := Report{Verdict: "CPU in PHP: x.", LogQL: q, Processes: []Process{}, Memory: []Memory{}, Warnings: []string{}}
	var b bytes.Buffer
	if err := r.Table(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if lines[1] != "Verdict: CPU in PHP: x." || !strings.HasPrefix(lines[2], "Raw traces (LogQL): {") {
		t.Fatalf("no LogQL line under the verdict:\n%s", b.String())
	}
	var words []string
	for _, l := range lines[3:] {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		if len([]rune(l)) > width {
			t.Errorf("a line of %d columns: %q", len([]rune(l)), l)
		}
		words = append(words, strings.Fields(l)...)
	}
	if len([]rune(lines[2])) > width {
		t.Errorf("a line of %d columns: %q", len([]rune(lines[2])), lines[2])
	}
	first := strings.Fields(lines[2])
	got := strings.Join(append(first[3:], words...), " ")
	if got != q {
		t.Errorf("the wrapped query reads\n  %s\nnot\n  %s", got, q)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		LogQL string `json:"logql"`
	}
	if err := json.Unmarshal(js, &back); err != nil || back.LogQL != q {
		t.Errorf("json logql %q, %v; want %q", back.LogQL, err, q)
	}
	r.LogQL = ""
	b.Reset()
	if err := r.Table(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Raw traces") {
		t.Errorf("a LogQL line without a search:\n%s", b.String())
	}
}

func TestQueryWords(t *testing.T) {
	got := queryWords(`{a="x y", b=` + "`p q`" + `} |= "say \"hi there\"" | json`)
	want := []string{`{a="x y",`, "b=`p q`}", `|=`, `"say \"hi there\""`, `|`, `json`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q; want %q", got, want)
	}
}
