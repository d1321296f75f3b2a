package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/promapi"
	"github.com/bitville/bitville-apm/internal/top"
)

// TopCmd prints the offenders of a window against a baseline.
type TopCmd struct {
	PrometheusURL string        `name:"prometheus.url" default:"http://127.0.0.1:9090" placeholder:"URL" help:"The Prometheus that scrapes the agent and the pg-exporter (with alerts/recording.rules.yml loaded or not: top reads the raw series)."`
	From          string        `name:"from" placeholder:"TIME" help:"Start of the window: RFC 3339 (2026-11-28T13:00:00Z) or Unix seconds. Default: --to minus 15m."`
	To            string        `name:"to" placeholder:"TIME" help:"End of the window: RFC 3339 or Unix seconds. Default: now."`
	Baseline      time.Duration `name:"baseline" default:"1h" help:"Length of the baseline period, just before the window, that the window is compared with."`
	Format        string        `name:"format" default:"table" enum:"table,json" help:"Output: a table for a 100-column terminal, or JSON (${enum})."`
	Limit         int           `name:"limit" default:"5" help:"Items per category."`
	Project       string        `name:"project" placeholder:"REGEX" help:"Only these projects (a regular expression on the project label)."`
	Instance      string        `name:"instance" placeholder:"REGEX" help:"Only these hosts (a regular expression on the instance label of the agent: its PHP metrics and host processes)."`
	Timeout       time.Duration `name:"timeout" default:"60s" help:"Give up on Prometheus after this long."`

	out io.Writer // os.Stdout unless a test sets it
	now func() time.Time
}

// exitError carries a process exit status: 1 for an error, 3 for a report
// made without one exporter's metrics.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// parseTime reads RFC 3339 or Unix seconds (with a fraction).
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-11-28T13:00:00Z) nor Unix seconds", s)
	}
	return t, nil
}

func (c *TopCmd) options() (top.Options, error) {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	o := top.Options{To: now(), Baseline: c.Baseline, Limit: c.Limit, Project: c.Project, Instance: c.Instance}
	var err error
	if c.To != "" {
		if o.To, err = parseTime(c.To); err != nil {
			return o, fmt.Errorf("--to: %w", err)
		}
	}
	o.From = o.To.Add(-15 * time.Minute)
	if c.From != "" {
		if o.From, err = parseTime(c.From); err != nil {
			return o, fmt.Errorf("--from: %w", err)
		}
	}
	return o, o.Validate()
}

// Run asks Prometheus and prints the report.
func (c *TopCmd) Run() error {
	out := c.out
	if out == nil {
		out = os.Stdout
	}
	o, err := c.options()
	if err != nil {
		return &exitError{1, err}
	}
	client, err := promapi.New(c.PrometheusURL)
	if err != nil {
		return &exitError{1, fmt.Errorf("--prometheus.url: %w", err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	r, err := top.Run(ctx, client, o)
	var missing *top.MissingError
	if err != nil && !errors.As(err, &missing) {
		var pe *promapi.Error
		if errors.As(err, &pe) {
			return &exitError{1, fmt.Errorf("Prometheus refused a query: %w", err)}
		}
		return &exitError{1, err}
	}
	if c.Format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return &exitError{1, err}
		}
	} else if err := r.Table(out); err != nil {
		return &exitError{1, err}
	}
	if missing != nil {
		return &exitError{3, fmt.Errorf("the report is incomplete: %s", strings.Join(missing.Missing, "; "))}
	}
	return nil
}
