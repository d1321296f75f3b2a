package top

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
		if got := verdict(&tc.r); got != tc.want {
			t.Errorf("got %q\nwant %q", got, tc.want)
		}
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
