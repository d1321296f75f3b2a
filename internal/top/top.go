// Package top is `bitville-apm top`: it asks Prometheus about a window
// and the baseline period just before it, and ranks the offenders of the
// window by how much each grew: endpoints, PHP functions, SQL queries,
// database wait events, processes of the host and endpoints' memory, with
// a one-line verdict.
package top

import (
	"context"
	"errors"
	"fmt"
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
// a score: how much it grew, in workers, cores or sessions (memory: see
// Memory).
type Report struct {
	Window   Period `json:"window"`
	Baseline Period `json:"baseline"`
	Verdict  string `json:"verdict"`
	// LogQL is the search of the verdict's culprit in the raw traces
	// (docs/raw-traces.md), for the window: "" when the culprit has none
	// (a process outside PHP) or there is no culprit.
	LogQL     string     `json:"logql"`
	Endpoints []Endpoint `json:"endpoints"`
	Functions []Function `json:"functions"`
	Queries   []Query    `json:"queries"`
	Waits     []Wait     `json:"waits"`
	// Processes and Memory are always arrays, empty when nothing grew or
	// when the metrics behind them are absent (an agent without its host
	// collector is a legitimate setup, so that is no warning).
	Processes []Process `json:"processes"`
	Memory    []Memory  `json:"memory"`
	// Warnings name what is missing (an exporter not scraped).
	Warnings []string `json:"warnings"`

	phpGrowth   float64            // growth of every PHP endpoint, added
	groupGrowth map[string]float64 // growth of every process name of a group, added
	hostSeen    bool               // the host collector's metrics are in the window
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

// Run makes the report. With a *MissingError it still returns the report
// made from the metrics that are there.
func Run(ctx context.Context, c *promapi.Client, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	w := o.To.Sub(o.From)
	r := &Report{
		Window:    Period{From: o.From, To: o.To, Seconds: w.Seconds()},
		Baseline:  Period{From: o.From.Add(-o.Baseline), To: o.From, Seconds: o.Baseline.Seconds()},
		Processes: []Process{},
		Memory:    []Memory{},
		Warnings:  []string{},
	}
	e := evaluator{c: c, wEnd: o.To, bEnd: o.From, wRange: rangeOf(w), bRange: rangeOf(o.Baseline)}

	// What is there at all.
	count := func(expr string) (float64, error) {
		s, err := e.window(ctx, "count("+expr+")")
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
	host, err := count("last_over_time(bitville_host_process_cpu_seconds_total" + o.hostSel() + "[$range])")
	if err != nil {
		return nil, err
	}
	r.hostSeen = host > 0
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
		if r.Endpoints, r.phpGrowth, err = endpoints(ctx, e, o); err != nil {
			return nil, err
		}
		if r.Functions, err = functions(ctx, e, o); err != nil {
			return nil, err
		}
		if r.Memory, err = memory(ctx, e, o); err != nil {
			return nil, err
		}
	}
	if r.hostSeen {
		if r.Processes, r.groupGrowth, err = processes(ctx, e, o); err != nil {
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
	r.Verdict, r.LogQL = verdict(r)
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
