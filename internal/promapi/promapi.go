// Package promapi is a small client of Prometheus's HTTP API (v1): instant
// and range queries, alerts and rules. It is what `bitville-apm top` and
// the end-to-end tests use; it decodes only what they need.
package promapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client asks one Prometheus.
type Client struct {
	URL  string // base URL, e.g. http://127.0.0.1:9090
	HTTP *http.Client
}

// New returns a client of the Prometheus at base (scheme://host:port[/prefix]).
func New(base string) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid Prometheus URL %q: want http(s)://host:port", base)
	}
	return &Client{URL: strings.TrimRight(base, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// Error is an error Prometheus reported (status "error"): Type is its
// errorType, e.g. "bad_data" for a query that does not parse.
type Error struct {
	Type, Message string
	HTTPStatus    int
}

func (e *Error) Error() string { return fmt.Sprintf("prometheus: %s: %s", e.Type, e.Message) }

// Sample is one series of a vector, or one point of a matrix series.
type Sample struct {
	Metric map[string]string
	Time   time.Time
	Value  float64
}

// Series is one series of a range query.
type Series struct {
	Metric map[string]string
	Points []Point
}

// Point is one value of a Series.
type Point struct {
	Time  time.Time
	Value float64
}

type envelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func (c *Client) get(ctx context.Context, path string, params url.Values, out any) error {
	u := c.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach Prometheus at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("cannot read Prometheus's answer: %w", err)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s%s answered HTTP %d, not the Prometheus API: %.200s", c.URL, path, resp.StatusCode, body)
	}
	if env.Status != "success" {
		return &Error{Type: env.ErrorType, Message: env.Error, HTTPStatus: resp.StatusCode}
	}
	return json.Unmarshal(env.Data, out)
}

// value decodes a [unix seconds, "value"] pair.
func value(raw [2]json.RawMessage) (time.Time, float64, error) {
	var ts float64
	var s string
	if err := json.Unmarshal(raw[0], &ts); err != nil {
		return time.Time{}, 0, err
	}
	if err := json.Unmarshal(raw[1], &s); err != nil {
		return time.Time{}, 0, err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, 0, err
	}
	sec := int64(ts)
	return time.Unix(sec, int64((ts-float64(sec))*1e9)), v, nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64)
}

// Query runs an instant query at t (the zero time: now). A scalar result
// comes back as one sample without labels.
func (c *Client) Query(ctx context.Context, expr string, t time.Time) ([]Sample, error) {
	p := url.Values{"query": {expr}}
	if !t.IsZero() {
		p.Set("time", formatTime(t))
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := c.get(ctx, "/api/v1/query", p, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var rs []struct {
			Metric map[string]string  `json:"metric"`
			Value  [2]json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &rs); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(rs))
		for _, r := range rs {
			ts, v, err := value(r.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Metric: r.Metric, Time: ts, Value: v})
		}
		return out, nil
	case "scalar":
		var r [2]json.RawMessage
		if err := json.Unmarshal(data.Result, &r); err != nil {
			return nil, err
		}
		ts, v, err := value(r)
		if err != nil {
			return nil, err
		}
		return []Sample{{Metric: map[string]string{}, Time: ts, Value: v}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q, want a vector or a scalar", expr, data.ResultType)
	}
}

// QueryRange runs a range query.
func (c *Client) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	if step <= 0 {
		return nil, errors.New("query range: the step must be positive")
	}
	p := url.Values{"query": {expr}, "start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string    `json:"metric"`
			Values [][2]json.RawMessage `json:"values"`
		} `json:"result"`
	}
	if err := c.get(ctx, "/api/v1/query_range", p, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "matrix" {
		return nil, fmt.Errorf("query range %q: result type %q, want a matrix", expr, data.ResultType)
	}
	out := make([]Series, 0, len(data.Result))
	for _, r := range data.Result {
		s := Series{Metric: r.Metric}
		for _, raw := range r.Values {
			ts, v, err := value(raw)
			if err != nil {
				return nil, err
			}
			s.Points = append(s.Points, Point{Time: ts, Value: v})
		}
		out = append(out, s)
	}
	return out, nil
}

// Alert is an active alert (pending or firing).
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// Alerts returns the active alerts.
func (c *Client) Alerts(ctx context.Context) ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := c.get(ctx, "/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
}

// RuleGroup is a loaded rule group and the health of its rules.
type RuleGroup struct {
	Name  string `json:"name"`
	File  string `json:"file"`
	Rules []struct {
		Name      string `json:"name"`
		Query     string `json:"query"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
		Type      string `json:"type"`
	} `json:"rules"`
}

// Rules returns the loaded rule groups.
func (c *Client) Rules(ctx context.Context) ([]RuleGroup, error) {
	var data struct {
		Groups []RuleGroup `json:"groups"`
	}
	if err := c.get(ctx, "/api/v1/rules", nil, &data); err != nil {
		return nil, err
	}
	return data.Groups, nil
}
