package top

import (
	"context"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bitville/bitville-apm/internal/promapi"
)

// minGrowth is the least growth an item needs to be listed: a hundredth
// of a worker, core or session (or, for endpoints, more abandoned
// requests; for memory, see memoryScore).
const minGrowth = 0.01

// rangeOf is a PromQL range duration for d (whole seconds, at least 1s).
func rangeOf(d time.Duration) string {
	return strconv.FormatInt(max(int64(d.Round(time.Second)/time.Second), 1), 10) + "s"
}

// phpSel is the label matchers of the PHP side.
func (o Options) phpSel(extra ...string) string { return o.selector(o.Project, extra) }

// hostSel is the label matchers of the host collector: it is served by
// the agent, so it has the agent's instance, but no project.
func (o Options) hostSel(extra ...string) string { return o.selector("", extra) }

// selector is {project=~…,instance=~…,extra…}, each filter when set.
func (o Options) selector(project string, extra []string) string {
	var m []string
	if project != "" {
		m = append(m, "project=~"+strconv.Quote(project))
	}
	if o.Instance != "" {
		m = append(m, "instance=~"+strconv.Quote(o.Instance))
	}
	return "{" + strings.Join(append(m, extra...), ",") + "}"
}

// evaluator runs a query over the window and over the baseline.
type evaluator struct {
	c              *promapi.Client
	wEnd, bEnd     time.Time
	wRange, bRange string
}

// expand replaces $range in expr with a period's range and $seconds with
// its length in seconds.
func expand(expr, rng string) string {
	return strings.NewReplacer("$range", rng, "$seconds", strings.TrimSuffix(rng, "s")).Replace(expr)
}

// both evaluates expr, with $range and $seconds of each period, at the
// end of the window and at the end of the baseline.
func (e evaluator) both(ctx context.Context, expr string) (win, base []promapi.Sample, err error) {
	win, err = e.c.Query(ctx, expand(expr, e.wRange), e.wEnd)
	if err != nil {
		return nil, nil, err
	}
	base, err = e.c.Query(ctx, expand(expr, e.bRange), e.bEnd)
	return win, base, err
}

// window evaluates expr, with $range and $seconds of the window, at the
// end of the window.
func (e evaluator) window(ctx context.Context, expr string) ([]promapi.Sample, error) {
	return e.c.Query(ctx, expand(expr, e.wRange), e.wEnd)
}

// counterRate is the per-second growth of a counter over $range, by the
// labels by: rate() for the series that existed when the period began,
// and for those first exposed within it their whole value over the
// period. rate() alone sees nothing of a series whose first sample
// already holds its total: the functions of a cron job that ran once
// reach the agent in one end message, the only one that ever names them.
// The series' presence and value are last_over_time() over a period, not
// instant lookups: one failed scrape just before either end of the period
// leaves a staleness marker there, which made an instant lookup see no
// series (the spike's new function vanished from the report, or an old
// series counted its whole total as new).
func counterRate(metric, by string) string {
	before := `last_over_time(` + metric + `[$range] offset $range)`
	return `sum by (` + by + `) ((rate(` + metric + `[$range]) and ` + before + `) or ((last_over_time(` +
		metric + `[$range]) unless ` + before + `) / $seconds))`
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

// regexOf is a PromQL regex matcher value matching exactly the names.
func regexOf(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = regexp.QuoteMeta(n)
	}
	return strconv.Quote(strings.Join(q, "|"))
}
