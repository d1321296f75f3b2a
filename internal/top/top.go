// Package top is `bitville-apm top`: it asks Prometheus about a window
// and the baseline period just before it, and ranks the offenders of the
// window by how much each grew: endpoints, PHP functions, SQL queries and
// database wait events, with a one-line verdict.
package top

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/promapi"
)

// Options select the window, the baseline and the series.
type Options struct {
	From, To time.Time     // the window
	Baseline time.Duration // the period just before From
	Limit    int           // items per category
	Project  string        // regex on the project label ("" = all)
	Instance string        // regex on the instance label ("" = all)
}

// Period is a time range of the report.
type Period struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Seconds float64   `json:"seconds"`
}

// Report is the ranked offenders. Every item has its figures in the window
// and in the baseline (per-second rates or averages over each period) and
// a score: how much it grew, in workers, cores or sessions.
type Report struct {
	Window    Period     `json:"window"`
	Baseline  Period     `json:"baseline"`
	Verdict   string     `json:"verdict"`
	Endpoints []Endpoint `json:"endpoints"`
	Functions []Function `json:"functions"`
	Queries   []Query    `json:"queries"`
	Waits     []Wait     `json:"waits"`
	// Warnings name what is missing (an exporter not scraped).
	Warnings []string `json:"warnings"`
}

// EndpointFigures are an endpoint's figures in one period.
type EndpointFigures struct {
	CPU       float64 `json:"cpu_seconds_per_second"`  // CPU seconds/s of finished requests
	Wall      float64 `json:"wall_seconds_per_second"` // wall seconds/s of finished requests (busy workers)
	InFlight  float64 `json:"in_flight"`               // average requests in flight
	Abandoned float64 `json:"abandoned_per_minute"`    // requests started and never finished
	Requests  float64 `json:"requests_per_second"`
}

// busy is the workers the endpoint kept busy: finished requests' wall
// time, or the requests in flight when more (stuck requests never finish).
func (f EndpointFigures) busy() float64 { return math.Max(f.Wall, f.InFlight) }

// Endpoint is one ranked endpoint. Score = growth of busy workers + growth
// of CPU cores.
type Endpoint struct {
	Name     string          `json:"name"`
	Project  string          `json:"project"`
	Score    float64         `json:"score"`
	Window   EndpointFigures `json:"window"`
	Baseline EndpointFigures `json:"baseline"`
}

// FunctionFigures are a function's figures in one period.
type FunctionFigures struct {
	Self float64 `json:"self_seconds_per_second"`
}

// Function is one ranked PHP function. Score = growth of self time.
type Function struct {
	Name     string          `json:"name"`
	Project  string          `json:"project"`
	Score    float64         `json:"score"`
	Window   FunctionFigures `json:"window"`
	Baseline FunctionFigures `json:"baseline"`
}

// QueryFigures are a query's figures in one period.
type QueryFigures struct {
	PHP      float64 `json:"php_seconds_per_second"` // seconds/s PHP waited on it
	Sessions float64 `json:"db_active_sessions"`     // average active sessions running it
	Exec     float64 `json:"db_exec_seconds_per_second"`
}

// Query is one ranked query fingerprint. Score = the largest growth of
// its three figures (they measure the same time from different sides).
type Query struct {
	Name     string       `json:"name"` // normalised text ("" when unknown)
	QueryFP  string       `json:"query_fp"`
	Score    float64      `json:"score"`
	Window   QueryFigures `json:"window"`
	Baseline QueryFigures `json:"baseline"`
	// TopEndpoint is the endpoint that spent most PHP time on it in the
	// window, when known.
	TopEndpoint string `json:"top_endpoint,omitempty"`
}

// WaitFigures are a wait event's figures in one period.
type WaitFigures struct {
	Sessions float64 `json:"active_sessions"`
}

// Wait is one ranked database wait event (CPU: running). Score = growth
// of average active sessions.
type Wait struct {
	Name          string      `json:"name"` // type/event
	WaitEventType string      `json:"wait_event_type"`
	WaitEvent     string      `json:"wait_event"`
	Score         float64     `json:"score"`
	Window        WaitFigures `json:"window"`
	Baseline      WaitFigures `json:"baseline"`
}

// ErrNoData is returned when the window holds no data at all, or no
// Bitville APM metrics.
var ErrNoData = errors.New("no data")

// MissingError says an exporter's metrics are absent from the window; the
// report was still made from the others.
type MissingError struct{ Missing []string }

func (e *MissingError) Error() string { return strings.Join(e.Missing, "; ") }

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case o.From.IsZero() || o.To.IsZero():
		return errors.New("the window needs a start and an end")
	case !o.To.After(o.From):
		return fmt.Errorf("the window ends (%s) before it starts (%s)", o.To.Format(time.RFC3339), o.From.Format(time.RFC3339))
	case o.To.Sub(o.From) < time.Second:
		return errors.New("the window must be at least 1s")
	case o.Baseline < time.Second:
		return errors.New("--baseline must be at least 1s")
	case o.Limit < 1:
		return errors.New("--limit must be at least 1")
	}
	return nil
}

// rangeOf is a PromQL range duration for d (whole seconds, at least 1s).
func rangeOf(d time.Duration) string {
	return strconv.FormatInt(max(int64(d.Round(time.Second)/time.Second), 1), 10) + "s"
}

// phpSel is the label matchers of the PHP side.
func (o Options) phpSel(extra ...string) string {
	var m []string
	if o.Project != "" {
		m = append(m, "project=~"+strconv.Quote(o.Project))
	}
	if o.Instance != "" {
		m = append(m, "instance=~"+strconv.Quote(o.Instance))
	}
	m = append(m, extra...)
	return "{" + strings.Join(m, ",") + "}"
}

// evaluator runs a query over the window and over the baseline.
type evaluator struct {
	c              *promapi.Client
	wEnd, bEnd     time.Time
	wRange, bRange string
}

// both evaluates expr, with $range replaced by each period's length, at
// the end of the window and at the end of the baseline.
func (e evaluator) both(ctx context.Context, expr string) (win, base []promapi.Sample, err error) {
	win, err = e.c.Query(ctx, strings.ReplaceAll(expr, "$range", e.wRange), e.wEnd)
	if err != nil {
		return nil, nil, err
	}
	base, err = e.c.Query(ctx, strings.ReplaceAll(expr, "$range", e.bRange), e.bEnd)
	return win, base, err
}

// Run makes the report. With a *MissingError it still returns the report
// made from the metrics that are there.
func Run(ctx context.Context, c *promapi.Client, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	w := o.To.Sub(o.From)
	r := &Report{
		Window:   Period{From: o.From, To: o.To, Seconds: w.Seconds()},
		Baseline: Period{From: o.From.Add(-o.Baseline), To: o.From, Seconds: o.Baseline.Seconds()},
		Warnings: []string{},
	}
	e := evaluator{c: c, wEnd: o.To, bEnd: o.From, wRange: rangeOf(w), bRange: rangeOf(o.Baseline)}

	// What is there at all.
	count := func(expr string) (float64, error) {
		s, err := c.Query(ctx, "count("+strings.ReplaceAll(expr, "$range", e.wRange)+")", o.To)
		if err != nil || len(s) == 0 {
			return 0, err
		}
		return s[0].Value, nil
	}
	php, err := count("last_over_time(bitville_php_requests_total" + o.phpSel() + "[$range])")
	if err != nil {
		return nil, err
	}
	pg, err := count("last_over_time(bitville_pg_up[$range])")
	if err != nil {
		return nil, err
	}
	if php == 0 && pg == 0 {
		any, err := count("last_over_time(up[$range])")
		if err != nil {
			return nil, err
		}
		if any == 0 {
			return nil, fmt.Errorf("%w: Prometheus has no samples between %s and %s; check the window (--from, --to)", ErrNoData, o.From.Format(time.RFC3339), o.To.Format(time.RFC3339))
		}
		return nil, fmt.Errorf("%w: no Bitville APM metrics between %s and %s: neither the agent (bitville_php_*, job bitville-agent) nor the pg-exporter (bitville_pg_*, job bitville-pg-exporter) seems to be scraped%s",
			ErrNoData, o.From.Format(time.RFC3339), o.To.Format(time.RFC3339), filterNote(o))
	}
	var missing []string
	if php == 0 {
		missing = append(missing, "no PHP metrics (bitville_php_*) in the window"+filterNote(o)+": is the agent (bitville-apm agent, job bitville-agent) scraped?")
	}
	if pg == 0 {
		missing = append(missing, "no PostgreSQL metrics (bitville_pg_*) in the window: is the pg-exporter (bitville-apm pg-exporter, job bitville-pg-exporter) scraped?")
	}
	r.Warnings = append(r.Warnings, missing...)

	if php > 0 {
		if r.Endpoints, err = endpoints(ctx, e, o); err != nil {
			return nil, err
		}
		if r.Functions, err = functions(ctx, e, o); err != nil {
			return nil, err
		}
	}
	if r.Queries, err = queries(ctx, e, o); err != nil {
		return nil, err
	}
	if pg > 0 {
		if r.Waits, err = waits(ctx, e, o); err != nil {
			return nil, err
		}
	}
	r.Verdict = verdict(r)
	if len(missing) > 0 {
		return r, &MissingError{Missing: missing}
	}
	return r, nil
}

func filterNote(o Options) string {
	if o.Project == "" && o.Instance == "" {
		return ""
	}
	return fmt.Sprintf(" (for project=~%q instance=~%q)", o.Project, o.Instance)
}

// figure is one query of a category and the field of F it fills.
type figure[F any] struct {
	expr string
	set  func(f *F, v float64)
}

// gather runs each figure over the window and over the baseline and folds
// the samples into items keyed by key(labels), made by newItem; figs
// returns an item's window and baseline figures.
func gather[T, F any](ctx context.Context, e evaluator, figures []figure[F], key func(map[string]string) string,
	newItem func(map[string]string) *T, figs func(*T) (win, base *F)) (map[string]*T, error) {
	items := map[string]*T{}
	for _, fig := range figures {
		win, base, err := e.both(ctx, fig.expr)
		if err != nil {
			return nil, err
		}
		for i, vec := range [][]promapi.Sample{win, base} {
			for _, s := range vec {
				if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
					continue
				}
				k := key(s.Metric)
				it := items[k]
				if it == nil {
					it = newItem(s.Metric)
					items[k] = it
				}
				w, b := figs(it)
				if i == 0 {
					fig.set(w, s.Value)
				} else {
					fig.set(b, s.Value)
				}
			}
		}
	}
	return items, nil
}

// rank scores every item (score also stores it in the item) and returns
// those it keeps, the highest score first (ties by name), at most limit.
func rank[T any](items map[string]*T, score func(*T) (float64, bool), name func(*T) string, limit int) []T {
	type scored struct {
		it    *T
		score float64
	}
	kept := make([]scored, 0, len(items))
	for _, it := range items {
		if v, ok := score(it); ok {
			kept = append(kept, scored{it, v})
		}
	}
	sort.Slice(kept, func(i, j int) bool {
		if kept[i].score != kept[j].score {
			return kept[i].score > kept[j].score
		}
		return name(kept[i].it) < name(kept[j].it)
	})
	out := make([]T, 0, min(len(kept), limit))
	for _, k := range kept[:min(len(kept), limit)] {
		out = append(out, *k.it)
	}
	return out
}

func endpoints(ctx context.Context, e evaluator, o Options) ([]Endpoint, error) {
	sel := o.phpSel()
	items, err := gather(ctx, e, []figure[EndpointFigures]{
		{`sum by (project, endpoint) (rate(bitville_php_request_cpu_seconds_total` + sel + `[$range]))`, func(f *EndpointFigures, v float64) { f.CPU = v }},
		{`sum by (project, endpoint) (rate(bitville_php_request_duration_seconds_sum` + sel + `[$range]))`, func(f *EndpointFigures, v float64) { f.Wall = v }},
		{`sum by (project, endpoint) (avg_over_time(bitville_php_requests_in_flight` + sel + `[$range]))`, func(f *EndpointFigures, v float64) { f.InFlight = v }},
		{`60 * sum by (project, endpoint) (rate(bitville_php_requests_abandoned_total` + sel + `[$range]))`, func(f *EndpointFigures, v float64) { f.Abandoned = v }},
		{`sum by (project, endpoint) (rate(bitville_php_requests_total` + sel + `[$range]))`, func(f *EndpointFigures, v float64) { f.Requests = v }},
	},
		func(m map[string]string) string { return m["project"] + "\x00" + m["endpoint"] },
		func(m map[string]string) *Endpoint { return &Endpoint{Name: m["endpoint"], Project: m["project"]} },
		func(it *Endpoint) (*EndpointFigures, *EndpointFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	return rank(items, func(it *Endpoint) (float64, bool) {
		it.Score = (it.Window.busy() - it.Baseline.busy()) + (it.Window.CPU - it.Baseline.CPU)
		return it.Score, it.Score >= minGrowth || it.Window.Abandoned > it.Baseline.Abandoned
	}, func(it *Endpoint) string { return it.Name }, o.Limit), nil
}

func functions(ctx context.Context, e evaluator, o Options) ([]Function, error) {
	items, err := gather(ctx, e, []figure[FunctionFigures]{
		{`sum by (project, function) (rate(bitville_php_function_self_seconds_total` + o.phpSel() + `[$range]))`, func(f *FunctionFigures, v float64) { f.Self = v }},
	},
		func(m map[string]string) string { return m["project"] + "\x00" + m["function"] },
		func(m map[string]string) *Function { return &Function{Name: m["function"], Project: m["project"]} },
		func(it *Function) (*FunctionFigures, *FunctionFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	return rank(items, func(it *Function) (float64, bool) {
		it.Score = it.Window.Self - it.Baseline.Self
		return it.Score, it.Score >= minGrowth
	}, func(it *Function) string { return it.Name }, o.Limit), nil
}

func queries(ctx context.Context, e evaluator, o Options) ([]Query, error) {
	items, err := gather(ctx, e, []figure[QueryFigures]{
		{`sum by (query_fp) (rate(bitville_php_sql_seconds_total` + o.phpSel() + `[$range]))`, func(f *QueryFigures, v float64) { f.PHP = v }},
		{`sum by (query_fp) (rate(bitville_pg_session_samples_total{state="active"}[$range]))`, func(f *QueryFigures, v float64) { f.Sessions = v }},
		{`sum by (query_fp) (rate(bitville_pg_statement_seconds_total[$range]))`, func(f *QueryFigures, v float64) { f.Exec = v }},
	},
		func(m map[string]string) string { return m["query_fp"] },
		func(m map[string]string) *Query { return &Query{QueryFP: m["query_fp"]} },
		func(it *Query) (*QueryFigures, *QueryFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	out := rank(items, func(it *Query) (float64, bool) {
		if it.QueryFP == "" || it.QueryFP == "other" {
			return 0, false // no statement, or the sum of those past a label limit
		}
		it.Score = max(it.Window.PHP-it.Baseline.PHP, it.Window.Sessions-it.Baseline.Sessions, it.Window.Exec-it.Baseline.Exec)
		return it.Score, it.Score >= minGrowth
	}, func(it *Query) string { return it.QueryFP }, o.Limit)
	if len(out) == 0 {
		return out, nil
	}
	// Texts and the endpoint behind each, for the ranked ones only.
	fps := make([]string, len(out))
	for i, q := range out {
		fps[i] = q.QueryFP
	}
	re := strings.Join(fps, "|")
	texts, err := e.c.Query(ctx, `max by (query_fp, query) (last_over_time(bitville_sql_query_info{query_fp=~"`+re+`"}[`+e.wRange+`]))`, e.wEnd)
	if err != nil {
		return nil, err
	}
	eps, err := e.c.Query(ctx, `topk by (query_fp) (1, sum by (query_fp, endpoint) (rate(bitville_php_sql_seconds_total`+o.phpSel(`query_fp=~"`+re+`"`)+`[`+e.wRange+`])))`, e.wEnd)
	if err != nil {
		return nil, err
	}
	for i := range out {
		for _, t := range texts {
			if t.Metric["query_fp"] == out[i].QueryFP && (out[i].Name == "" || len(t.Metric["query"]) > len(out[i].Name)) {
				out[i].Name = t.Metric["query"] // the longest: the agent's is cut at 300 bytes
			}
		}
		for _, s := range eps {
			if s.Metric["query_fp"] == out[i].QueryFP && s.Value > 0 {
				out[i].TopEndpoint = s.Metric["endpoint"]
			}
		}
	}
	return out, nil
}

func waits(ctx context.Context, e evaluator, o Options) ([]Wait, error) {
	items, err := gather(ctx, e, []figure[WaitFigures]{
		{`sum by (wait_event_type, wait_event) (rate(bitville_pg_session_samples_total{state="active"}[$range]))`, func(f *WaitFigures, v float64) { f.Sessions = v }},
	},
		func(m map[string]string) string { return m["wait_event_type"] + "/" + m["wait_event"] },
		func(m map[string]string) *Wait {
			return &Wait{Name: m["wait_event_type"] + "/" + m["wait_event"], WaitEventType: m["wait_event_type"], WaitEvent: m["wait_event"]}
		},
		func(it *Wait) (*WaitFigures, *WaitFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	return rank(items, func(it *Wait) (float64, bool) {
		it.Score = it.Window.Sessions - it.Baseline.Sessions
		return it.Score, it.Score >= minGrowth
	}, func(it *Wait) string { return it.Name }, o.Limit), nil
}

// minGrowth is the least growth an item needs to be listed: a hundredth
// of a worker, core or session (or, for endpoints, more abandoned
// requests).
const minGrowth = 0.01

// noise is the growth below which nothing counts as the verdict's
// offender: a twentieth of a worker, core or session.
const noise = 0.05

// verdict names the most likely cause: lock contention, stuck requests,
// slow SQL or CPU in PHP, whichever grew most.
func verdict(r *Report) string {
	var e *Endpoint
	var f *Function
	var q *Query
	var w *Wait
	if len(r.Endpoints) > 0 && r.Endpoints[0].Score > noise {
		e = &r.Endpoints[0]
	}
	if len(r.Functions) > 0 && r.Functions[0].Score > noise {
		f = &r.Functions[0]
	}
	if len(r.Queries) > 0 && r.Queries[0].Score > noise {
		q = &r.Queries[0]
	}
	if len(r.Waits) > 0 && r.Waits[0].Score > noise {
		w = &r.Waits[0]
	}
	cpu := 0.0
	if e != nil {
		cpu = e.Window.CPU - e.Baseline.CPU
	}
	queryText := func(q *Query) string {
		t := q.Name
		if t == "" {
			t = "query " + q.QueryFP
		}
		if len(t) > 80 {
			t = t[:77] + "..."
		}
		if q.TopEndpoint != "" {
			t += " (from " + q.TopEndpoint + ")"
		}
		return t
	}
	switch {
	case w != nil && w.WaitEventType == "Lock" && w.Score >= cpu:
		s := fmt.Sprintf("Lock contention: %.1f more database sessions wait on %s", w.Score, w.Name)
		if q != nil {
			s += "; the statement they run: " + queryText(q)
		}
		return s + "."
	// Stuck: requests are killed at least half as often as they finish. A
	// few abandoned among many finished are lost end messages (a full
	// socket queue) or the odd crash, not the cause of a spike.
	case e != nil && e.Window.Abandoned > e.Baseline.Abandoned && e.Window.Abandoned >= 0.5*60*e.Window.Requests &&
		e.Window.InFlight-e.Baseline.InFlight >= cpu:
		return fmt.Sprintf("Stuck requests: %s holds %.1f more workers in flight, and %.1f of its requests a minute are killed before they finish.",
			e.Name, e.Window.InFlight-e.Baseline.InFlight, e.Window.Abandoned)
	case q != nil && q.Score >= cpu:
		return fmt.Sprintf("Slow SQL: %s grew by %.2f s/s in PHP and %.2f active sessions in the database.",
			queryText(q), q.Window.PHP-q.Baseline.PHP, q.Window.Sessions-q.Baseline.Sessions)
	case e != nil && cpu > noise:
		s := fmt.Sprintf("CPU in PHP: %s uses %.2f more cores", e.Name, cpu)
		if f != nil {
			s += ", most of it in " + f.Name
		}
		return s + "."
	case e != nil:
		return fmt.Sprintf("Busy workers: %s keeps %.1f more workers busy.", e.Name, e.Window.busy()-e.Baseline.busy())
	default:
		return "No clear offender: nothing grew by more than the noise between the baseline and the window."
	}
}
