package pushgw

// Stand-in for Parse in the remote writer's tests; see
// zz_snapshot_standin.go. When snapshot.go lands, newTestSnapshot becomes
// a call of Parse with the same text and meta.

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// newTestSnapshot reads text (the exposition format, as pushed) into a
// snapshot with project, job and instance of meta on every series.
func newTestSnapshot(t testing.TB, meta Meta, text string) *Snapshot {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("cannot parse the test snapshot: %v", err)
	}
	s := &Snapshot{Meta: meta}
	add := func(name string, base []Label, value float64, extra ...Label) {
		ls := []Label{{"__name__", name}, {"project", meta.Project}, {"job", meta.Job}, {"instance", meta.Instance}}
		ls = append(ls, base...)
		ls = append(ls, extra...)
		slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
		s.samples = append(s.samples, standinSample{labels: ls, value: value})
	}
	names := make([]string, 0, len(mfs))
	for n := range mfs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, m := range mfs[n].GetMetric() {
			var base []Label
			for _, lp := range m.GetLabel() {
				base = append(base, Label{lp.GetName(), lp.GetValue()})
			}
			switch {
			case m.Counter != nil:
				add(n, base, m.GetCounter().GetValue())
			case m.Gauge != nil:
				add(n, base, m.GetGauge().GetValue())
			case m.Untyped != nil:
				add(n, base, m.GetUntyped().GetValue())
			case m.Histogram != nil:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(n+"_bucket", base, float64(b.GetCumulativeCount()), Label{"le", formatLe(b.GetUpperBound())})
				}
				add(n+"_sum", base, h.GetSampleSum())
				add(n+"_count", base, float64(h.GetSampleCount()))
			case m.Summary != nil:
				sm := m.GetSummary()
				for _, q := range sm.GetQuantile() {
					add(n, base, q.GetValue(), Label{"quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64)})
				}
				add(n+"_sum", base, sm.GetSampleSum())
				add(n+"_count", base, float64(sm.GetSampleCount()))
			}
		}
	}
	s.Series = len(s.samples)
	return s
}

func formatLe(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
