package pushgw

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// differentialInputs are bodies on the edges of the format, beside the
// files under testdata/.
var differentialInputs = []string{
	"a 1\n",
	"a{b=\"c\"} 1\na{b=\"d\"} 2\n",
	"# HELP a x\n# TYPE a counter\na{job=\"other\",instance=\"web-01\"} 5\n",
	"a{project=\"p\",exported_project=\"q\"} 1\n",
	"a{v=\"\\\\ \\\" \\n\"} NaN\nb +Inf\nc -Inf\nd 1e-300\n",
	"# TYPE h histogram\nh_bucket{le=\"0.1\",x=\"1\"} 1\nh_bucket{le=\"+Inf\",x=\"1\"} 2\nh_sum{x=\"1\"} 0.5\nh_count{x=\"1\"} 2\n",
	"# TYPE h histogram\nh_bucket{le=\"1.0\"} 1.5\nh_count 3\n",
	"# TYPE s summary\ns{quantile=\"0.99\"} 3\ns{quantile=\"NaN\"} 3\ns_sum 1\ns_count 7\n",
	"  a \t{ b = \"c\" , } \t 2\n",
	"a 1 1700000000000\n",
	"a{__x=\"1\"} 1\n",
	"a 1\nb 1\na 2\n",
}

// FuzzParse checks that Parse never panics, that what it accepts can be
// exposed and read back, and that where expfmt's parser accepts the same
// body both find the same series and values.
func FuzzParse(f *testing.F) {
	for _, in := range differentialInputs {
		f.Add([]byte(in))
	}
	for _, body := range testdataBodies(f) {
		f.Add(body)
	}
	lim := testLimits(f)
	lim.MaxSeriesPerPush = 1000
	f.Fuzz(func(t *testing.T, body []byte) {
		snap, err := Parse(body, testMeta("web-01", 1), lim, testNow)
		if err != nil {
			if _, ok := err.(*Rejection); !ok {
				t.Fatalf("got error %T %v; want a *Rejection", err, err)
			}
			return
		}
		checkExposition(t, snap)
		compareWithExpfmt(t, body, snap)
	})
}

func TestParseDifferential(t *testing.T) {
	inputs := map[string][]byte{}
	for i, in := range differentialInputs {
		inputs["input "+strconv.Itoa(i)] = []byte(in)
	}
	for name, body := range testdataBodies(t) {
		inputs[name] = body
	}
	for name, body := range inputs {
		t.Run(name, func(t *testing.T) {
			snap, err := Parse(body, testMeta("web-01", 1), testLimits(t), testNow)
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			checkExposition(t, snap)
			compareWithExpfmt(t, body, snap)
		})
	}
}

func testdataBodies(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("testdata/*.prom")
	if err != nil || len(files) == 0 {
		t.Fatalf("got %v, %v listing testdata/*.prom; want files", files, err)
	}
	out := map[string][]byte{}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

// checkExposition applies snap to a new Store and requires expfmt to read
// its /metrics with every series.
func checkExposition(t *testing.T, snap *Snapshot) {
	t.Helper()
	st := NewStore(testLimits(t), 0)
	if _, err := st.Apply(snap, testNow); err != nil {
		t.Fatalf("got %v applying to an empty store; want none", err)
	}
	var b bytes.Buffer
	if _, err := st.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("got %v reading our exposition back; want none:\n%s", err, b.Bytes())
	}
	compareSeries(t, mfs, snap)
}

// compareWithExpfmt compares the series of snap with those expfmt reads
// from body, when it reads it.
func compareWithExpfmt(t *testing.T, body []byte, snap *Snapshot) {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	if mfs, err := p.TextToMetricFamilies(bytes.NewReader(body)); err == nil {
		compareSeries(t, mfs, snap)
	}
}

// compareSeries requires the same series and values in mfs and snap. A
// histogram count of 0 may be only in mfs: expfmt makes one up for a
// histogram without count once one of its buckets has a fractional count.
func compareSeries(t *testing.T, mfs map[string]*dto.MetricFamily, snap *Snapshot) {
	t.Helper()
	theirs := expfmtSeries(mfs)
	ours := snapshotSeries(snap)
	for key, v := range ours {
		w, ok := theirs[key]
		if !ok {
			t.Errorf("got series %s only in ours", key)
			continue
		}
		if !sameValue(v, w) {
			t.Errorf("got %s = %v; expfmt reads %v", key, v, w)
		}
	}
	for key, w := range theirs {
		if _, ok := ours[key]; !ok && !(w == 0 && strings.Contains(key, "_count{")) {
			t.Errorf("got series %s only in expfmt's", key)
		}
	}
	for _, f := range snap.families {
		mf := mfs[f.name]
		if mf == nil {
			t.Errorf("got family %s only in ours", f.name)
			continue
		}
		if got, want := f.typ, strings.ToLower(mf.GetType().String()); got != want {
			t.Errorf("got family %s of type %s; expfmt reads %s", f.name, got, want)
		}
	}
}

func sameValue(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

// seriesKey is name{labels sorted by name}, le and quantile values
// normalised as numbers.
func seriesKey(name string, labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name + "{")
	for _, n := range names {
		b.WriteString(n + "=" + strconv.Quote(labels[n]) + ",")
	}
	b.WriteString("}")
	return b.String()
}

func normBound(s string) string {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// snapshotSeries reads our rendered lines back, le and quantile normalised,
// counts of summaries as expfmt keeps them.
func snapshotSeries(snap *Snapshot) map[string]float64 {
	out := map[string]float64{}
	for _, f := range snap.families {
		lines := f.lines
		for len(lines) > 0 {
			end := bytes.IndexByte(lines, '\n')
			ls := appendRenderedLabels(nil, lines[:end])
			v := lastValue(lines[:end])
			lines = lines[end+1:]
			labels := map[string]string{}
			for _, l := range ls[1:] {
				labels[l.Name] = l.Value
			}
			name := ls[0].Value
			if q, ok := labels["quantile"]; ok && f.typ == "summary" {
				labels["quantile"] = normBound(q)
			}
			if le, ok := labels["le"]; ok && f.typ == "histogram" {
				labels["le"] = normBound(le)
			}
			if f.typ == "summary" && name == f.name+"_count" {
				v = float64(uint64(v))
			}
			out[seriesKey(name, labels)] = v
		}
	}
	return out
}

// expfmtSeries flattens expfmt's families into series the way they would
// be printed, with the gateway's labels added as Parse adds them.
func expfmtSeries(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			addGatewayLabels(labels, testMeta("web-01", 1))
			with := func(k, v string) map[string]string {
				c := make(map[string]string, len(labels)+1)
				for a, b := range labels {
					c[a] = b
				}
				c[k] = v
				return c
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[seriesKey(name, labels)] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[seriesKey(name, labels)] = m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				out[seriesKey(name, labels)] = m.GetUntyped().GetValue()
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					out[seriesKey(name, with("quantile", normBound(strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64))))] = q.GetValue()
				}
				if s.SampleSum != nil {
					out[seriesKey(name+"_sum", labels)] = s.GetSampleSum()
				}
				if s.SampleCount != nil {
					out[seriesKey(name+"_count", labels)] = float64(s.GetSampleCount())
				}
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					v := float64(bk.GetCumulativeCount())
					if bk.CumulativeCountFloat != nil {
						v = bk.GetCumulativeCountFloat()
					}
					out[seriesKey(name+"_bucket", with("le", normBound(strconv.FormatFloat(bk.GetUpperBound(), 'g', -1, 64))))] = v
				}
				if h.SampleSum != nil {
					out[seriesKey(name+"_sum", labels)] = h.GetSampleSum()
				}
				if h.SampleCount != nil || h.SampleCountFloat != nil {
					v := float64(h.GetSampleCount())
					if h.SampleCountFloat != nil {
						v = h.GetSampleCountFloat()
					}
					out[seriesKey(name+"_count", labels)] = v
				}
			}
		}
	}
	return out
}

// addGatewayLabels is the label rule of a push, written for maps: a job,
// instance or project of another value moves to exported_<name>.
func addGatewayLabels(labels map[string]string, meta Meta) {
	for _, a := range [...][2]string{{"job", meta.Job}, {"instance", meta.Instance}, {"project", meta.Project}} {
		if v, ok := labels[a[0]]; ok && v != a[1] {
			n := exportedPrefix + a[0]
			for {
				if _, taken := labels[n]; !taken {
					break
				}
				n = exportedPrefix + n
			}
			labels[n] = v
		}
		labels[a[0]] = a[1]
	}
}
