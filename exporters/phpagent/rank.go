package phpagent

import (
	"cmp"
	"slices"
	"strings"

	"github.com/bitville/bitville-apm/internal/labelset"
)

// Rank gives the duration histograms to the top-K functions and queries of
// each project by decayed self time, so that the histograms follow what is
// expensive now. A histogram is taken away only from an item that falls out
// of the top 2·K, so items near the boundary do not flap: each project holds
// at most 2·K histograms of each kind.
func (a *Aggregator) Rank() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for project, ps := range a.projects.All() {
		rankItems(ps.functions, a.limits.TopFunctions, &ps.fnHists,
			func(fs *functionSeries) (*float64, *float64) { return &fs.window, &fs.score },
			func(fs *functionSeries) bool { return fs.hist != nil },
			func(name string, fs *functionSeries, on bool) {
				if on {
					fs.hist = a.fnDuration.WithLabelValues(project, name)
				} else {
					fs.hist = nil
					a.fnDuration.DeleteLabelValues(project, name)
				}
			})
		rankItems(ps.queries, a.limits.TopQueries, &ps.queryHists,
			func(qs *querySeries) (*float64, *float64) { return &qs.window, &qs.score },
			func(qs *querySeries) bool { return qs.hist != nil },
			func(fp string, qs *querySeries, on bool) {
				if on {
					qs.hist = a.sqlDuration.WithLabelValues(project, fp)
				} else {
					qs.hist = nil
					a.sqlDuration.DeleteLabelValues(project, fp)
				}
			})
	}
}

// rankItems decays each item's score, adds the time of its last window,
// and gives histograms to the top k (taking them from those past 2·k).
func rankItems[S any](items *labelset.Set[string, S], k int, held *int, times func(S) (window, score *float64), has func(S) bool, set func(string, S, bool)) {
	type ranked struct {
		name  string
		item  S
		score float64
	}
	all := make([]ranked, 0, items.Len())
	for name, it := range items.All() {
		w, s := times(it)
		*s = *s/2 + *w
		*w = 0
		if name != Overflow {
			all = append(all, ranked{name, it, *s})
		}
	}
	slices.SortFunc(all, func(x, y ranked) int {
		if c := cmp.Compare(y.score, x.score); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	for i, r := range all {
		switch {
		case i < k && !has(r.item):
			set(r.name, r.item, true)
			*held++
		case i >= 2*k && has(r.item):
			set(r.name, r.item, false)
			*held--
		}
	}
}
