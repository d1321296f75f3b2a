package top

import "context"

// ProcessFigures are a process name's figures in one period (from the
// agent's host collector: every process and thread of that name).
type ProcessFigures struct {
	CPU             float64 `json:"cpu_seconds_per_second"` // CPU cores, user + system
	Running         float64 `json:"running"`                // average tasks running or runnable (R)
	Uninterruptible float64 `json:"uninterruptible"`        // average tasks in uninterruptible sleep (D)
}

// Process is one ranked process name. Score = growth of CPU cores +
// growth of tasks in uninterruptible sleep: the two things the load
// average counts that a name can add.
type Process struct {
	Name     string         `json:"name"`  // the command name (comm), never its arguments
	Group    string         `json:"group"` // php, postgres, kernel or other
	Score    float64        `json:"score"`
	Window   ProcessFigures `json:"window"`
	Baseline ProcessFigures `json:"baseline"`
}

// Process groups of the host collector.
const (
	groupPHP      = "php"
	groupPostgres = "postgres"
	groupKernel   = "kernel"
	groupOther    = "other"
)

// processes ranks the process names, and returns the growth of each group
// (the positive scores of its names added, listed or not).
func processes(ctx context.Context, e evaluator, o Options) ([]Process, map[string]float64, error) {
	items, err := gather(ctx, e, []figure[ProcessFigures]{
		{`sum by (name, group) (rate(bitville_host_process_cpu_seconds_total` + o.hostSel() + `[$range]))`, func(f *ProcessFigures, v float64) { f.CPU = v }},
		{`sum by (name, group) (avg_over_time(bitville_host_tasks` + o.hostSel(`state="running"`) + `[$range]))`, func(f *ProcessFigures, v float64) { f.Running = v }},
		{`sum by (name, group) (avg_over_time(bitville_host_tasks` + o.hostSel(`state="uninterruptible"`) + `[$range]))`, func(f *ProcessFigures, v float64) { f.Uninterruptible = v }},
	},
		func(m map[string]string) string { return m["group"] + "\x00" + m["name"] },
		func(m map[string]string) *Process { return &Process{Name: m["name"], Group: m["group"]} },
		func(it *Process) (*ProcessFigures, *ProcessFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, nil, err
	}
	out := rank(items, func(it *Process) (float64, bool) {
		it.Score = (it.Window.CPU - it.Baseline.CPU) + (it.Window.Uninterruptible - it.Baseline.Uninterruptible)
		// name="other" is the sum of the names past the collector's top
		// names, not one process.
		return it.Score, it.Score >= minGrowth && it.Name != "other"
	}, func(it *Process) string { return it.Name }, o.Limit)
	groups := map[string]float64{}
	for _, it := range items {
		groups[it.Group] += max(it.Score, 0)
	}
	return out, groups, nil
}
