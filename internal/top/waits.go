package top

import "context"

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
