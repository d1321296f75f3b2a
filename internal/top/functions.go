package top

import (
	"context"
	"strings"
)

// FunctionFigures are a function's figures in one period.
type FunctionFigures struct {
	// Self is CPU seconds/s in the function itself (the CPU profiler),
	// kept under its first name; CPU is the same figure.
	Self float64 `json:"self_seconds_per_second"`
	CPU  float64 `json:"cpu_seconds_per_second"`
	// Wall is wall seconds/s the function held a worker (the real-time
	// profiler): busy workers. A blocking call is named by the call
	// (session_start, fgets, ->get), not by the user function making it.
	Wall float64 `json:"wall_seconds_per_second"`
}

// Function is one ranked PHP function. Score = growth of wall s/s (busy
// workers) + growth of CPU s/s, as for endpoints.
type Function struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	// Caller is the function that spent most wall time in it in the
	// window: for a blocking call the user function that made it; ""
	// when none (top-level code, or no wall time).
	Caller   string          `json:"caller"`
	Score    float64         `json:"score"`
	Window   FunctionFigures `json:"window"`
	Baseline FunctionFigures `json:"baseline"`
}

// cpuGrowth and wallGrowth are the function's growth in cores and in
// busy workers.
func (f Function) cpuGrowth() float64  { return f.Window.CPU - f.Baseline.CPU }
func (f Function) wallGrowth() float64 { return f.Window.Wall - f.Baseline.Wall }

func functions(ctx context.Context, e evaluator, o Options) ([]Function, error) {
	sel := o.phpSel()
	items, err := gather(ctx, e, []figure[FunctionFigures]{
		{counterRate(`bitville_php_function_self_seconds_total`+sel, "project, function"), func(f *FunctionFigures, v float64) { f.Self, f.CPU = v, v }},
		{counterRate(`bitville_php_function_wall_seconds_total`+sel, "project, function"), func(f *FunctionFigures, v float64) { f.Wall = v }},
	},
		func(m map[string]string) string { return m["project"] + "\x00" + m["function"] },
		func(m map[string]string) *Function { return &Function{Name: m["function"], Project: m["project"]} },
		func(it *Function) (*FunctionFigures, *FunctionFigures) { return &it.Window, &it.Baseline })
	if err != nil {
		return nil, err
	}
	out := rank(items, func(it *Function) (float64, bool) {
		it.Score = it.wallGrowth() + it.cpuGrowth()
		return it.Score, it.Score >= minGrowth
	}, func(it *Function) string { return it.Name }, o.Limit)
	if len(out) == 0 {
		return out, nil
	}
	// The caller of each ranked one: the one with most wall time.
	names := make([]string, len(out))
	for i, f := range out {
		names[i] = f.Name
	}
	callers, err := e.window(ctx, `topk by (project, function) (1, `+
		counterRate(`bitville_php_function_wall_seconds_total`+o.phpSel("function=~"+regexOf(names)), "project, function, caller")+`)`)
	if err != nil {
		return nil, err
	}
	for i := range out {
		for _, s := range callers {
			if s.Metric["project"] == out[i].Project && s.Metric["function"] == out[i].Name && s.Value > 0 {
				out[i].Caller = s.Metric["caller"]
			}
		}
	}
	return out, nil
}

// call renders a function as called: session_start(), Redis::get(),
// ->get().
func call(name string) string {
	if strings.HasSuffix(name, ")") {
		return name
	}
	return name + "()"
}
