package top

import (
	"context"
	"math"
)

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

// endpoints ranks the endpoints, and returns the growth of all of them
// together (the positive scores added, listed or not).
func endpoints(ctx context.Context, e evaluator, o Options) ([]Endpoint, float64, error) {
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
		return nil, 0, err
	}
	out := rank(items, func(it *Endpoint) (float64, bool) {
		it.Score = (it.Window.busy() - it.Baseline.busy()) + (it.Window.CPU - it.Baseline.CPU)
		return it.Score, it.Score >= minGrowth || it.Window.Abandoned > it.Baseline.Abandoned
	}, func(it *Endpoint) string { return it.Name }, o.Limit)
	total := 0.0
	for _, it := range items {
		total += max(it.Score, 0)
	}
	return out, total, nil
}
