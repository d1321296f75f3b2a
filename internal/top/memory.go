package top

import "context"

// MemoryFigures are an endpoint's memory figures in one period.
type MemoryFigures struct {
	PeakBytes   float64 `json:"peak_bytes_avg"`          // mean peak memory of its finished requests
	MemoryLimit float64 `json:"memory_limit_per_minute"` // its requests that died of memory_limit
	measured    bool    // whether requests finished in the period (PeakBytes is known)
}

// Memory is one endpoint ranked by memory. Score = growth of the requests
// a minute that died of memory_limit + growth of the mean peak memory in
// units of mibPerPoint MiB.
type Memory struct {
	Name     string        `json:"name"` // the endpoint
	Project  string        `json:"project"`
	Score    float64       `json:"score"`
	Window   MemoryFigures `json:"window"`
	Baseline MemoryFigures `json:"baseline"`
}

// mibPerPoint is the growth of mean peak memory that weighs as much as
// one more request a minute dying of memory_limit: 100 MiB. So an
// endpoint is listed from 1 MiB of growth (minGrowth), and counts in the
// verdict from 5 MiB (noise).
const mibPerPoint = 100

const mib = 1 << 20

// peakGrowth is the growth of the mean peak, when the endpoint finished
// requests in both periods (one that ran only in the window did not grow).
func (m Memory) peakGrowth() float64 {
	if !m.Window.measured || !m.Baseline.measured {
		return 0
	}
	return m.Window.PeakBytes - m.Baseline.PeakBytes
}

func (m Memory) limitGrowth() float64 { return m.Window.MemoryLimit - m.Baseline.MemoryLimit }

func memory(ctx context.Context, e evaluator, o Options) ([]Memory, error) {
	sel := o.phpSel()
	items, err := gather(ctx, e, []figure[MemoryFigures]{
		{`sum by (project, endpoint) (rate(bitville_php_request_memory_peak_bytes_sum` + sel + `[$range]))` +
			` / sum by (project, endpoint) (rate(bitville_php_request_memory_peak_bytes_count` + sel + `[$range]))`, func(f *MemoryFigures, v float64) { f.PeakBytes, f.measured = v, true }},
		{`60 * sum by (project, endpoint) (rate(bitville_php_errors_total` + o.phpSel(`kind="memory_limit"`) + `[$range]))`, func(f *MemoryFigures, v float64) { f.MemoryLimit = v }},
	},
		func(m map[string]string) string { return m["project"] + "\x00" + m["endpoint"] },
		func(m map[string]string) *Memory { return &Memory{Name: m["endpoint"], Project: m["project"]} },
		func(it *Memory) (*MemoryFigures, *MemoryFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	return rank(items, func(it *Memory) (float64, bool) {
		it.Score = it.limitGrowth() + it.peakGrowth()/mib/mibPerPoint
		return it.Score, it.Score >= minGrowth
	}, func(it *Memory) string { return it.Name }, o.Limit), nil
}
