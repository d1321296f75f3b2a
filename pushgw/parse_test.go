package pushgw

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/push"
)

var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// testLimits returns the flag defaults.
func testLimits(t testing.TB) Limits {
	t.Helper()
	var lim Limits
	if err := flagdefaults.Apply(&lim); err != nil {
		t.Fatal(err)
	}
	return lim
}

func testMeta(instance string, seq uint64) Meta {
	return Meta{
		Project: "shop", Job: "agent", Instance: instance,
		Batch:    push.BatchID{Boot: "0123456789abcdef", Seq: seq},
		Time:     testNow,
		Interval: 15 * time.Second,
	}
}

// rendered returns the lines of every family of s, families in order.
func rendered(s *Snapshot) string {
	var b strings.Builder
	for _, f := range s.families {
		b.Write(f.lines)
	}
	return b.String()
}

func TestParse(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		want          string
		wantRewritten int
	}{
		{"empty", "", "", 0},
		{"comments only", "# hello\n#\n\n# TYPE x counter\n", "", 0},
		{"untyped", "a 1\n", `a{job="agent",instance="web-01",project="shop"} 1` + "\n", 0},
		{"no final newline", "a 1", `a{job="agent",instance="web-01",project="shop"} 1` + "\n", 0},
		{"labels kept in order", `b{z="1",a="2"} 3` + "\n", `b{z="1",a="2",job="agent",instance="web-01",project="shop"} 3` + "\n", 0},
		{"families sorted", "b 1\na 2\n", `a{job="agent",instance="web-01",project="shop"} 2` + "\n" + `b{job="agent",instance="web-01",project="shop"} 1` + "\n", 0},
		{"same job kept", `a{job="agent"} 1` + "\n", `a{job="agent",instance="web-01",project="shop"} 1` + "\n", 0},
		{"other job exported", `a{job="x",q="1"} 1` + "\n", `a{exported_job="x",q="1",job="agent",instance="web-01",project="shop"} 1` + "\n", 1},
		{"other project exported twice", `a{project="x",exported_project="y"} 1` + "\n", `a{exported_exported_project="x",exported_project="y",job="agent",instance="web-01",project="shop"} 1` + "\n", 1},
		{"values", "a{k=\"1\"} NaN\na{k=\"2\"} +Inf\na{k=\"3\"} -inf\na{k=\"4\"} 1e3\na{k=\"5\"} -0.5\n",
			`a{k="1",job="agent",instance="web-01",project="shop"} NaN` + "\n" +
				`a{k="2",job="agent",instance="web-01",project="shop"} +Inf` + "\n" +
				`a{k="3",job="agent",instance="web-01",project="shop"} -Inf` + "\n" +
				`a{k="4",job="agent",instance="web-01",project="shop"} 1000` + "\n" +
				`a{k="5",job="agent",instance="web-01",project="shop"} -0.5` + "\n", 0},
		{"escapes kept", `a{k="q\"b\\n\n"} 1` + "\n", `a{k="q\"b\\n\n",job="agent",instance="web-01",project="shop"} 1` + "\n", 0},
		{"blanks", "  a \t{ k = \"v\" , } \t 2 \n", `a{k="v",job="agent",instance="web-01",project="shop"} 2` + "\n", 0},
		{"histogram", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
			`h_bucket{le="1.0",job="agent",instance="web-01",project="shop"} 1` + "\n" +
				`h_bucket{le="+Inf",job="agent",instance="web-01",project="shop"} 2` + "\n" +
				`h_sum{job="agent",instance="web-01",project="shop"} 3` + "\n" +
				`h_count{job="agent",instance="web-01",project="shop"} 2` + "\n", 0},
		{"summary", "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n",
			`s{quantile="0.5",job="agent",instance="web-01",project="shop"} 1` + "\n" +
				`s_sum{job="agent",instance="web-01",project="shop"} 3` + "\n" +
				`s_count{job="agent",instance="web-01",project="shop"} 2` + "\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, err := Parse([]byte(tt.body), testMeta("web-01", 1), testLimits(t), testNow)
			if err != nil {
				t.Fatalf("got error %v; want none", err)
			}
			if got := rendered(snap); got != tt.want {
				t.Errorf("got lines\n%s; want\n%s", got, tt.want)
			}
			if got, want := snap.Series, strings.Count(tt.want, "\n"); got != want {
				t.Errorf("got %d series; want %d", got, want)
			}
			if snap.Rewritten != tt.wantRewritten {
				t.Errorf("got %d rewritten; want %d", snap.Rewritten, tt.wantRewritten)
			}
		})
	}
}

func TestParseHelpAndType(t *testing.T) {
	body := "# HELP a Help with \\\\ and \\n.\n# TYPE a counter\na 1\n# TYPE b gauge\n# HELP b B.\nb 2\nc 3\n"
	snap, err := Parse([]byte(body), testMeta("web-01", 1), testLimits(t), testNow)
	if err != nil {
		t.Fatalf("got error %v; want none", err)
	}
	want := []struct {
		name, typ, help string
		hasHelp         bool
	}{{"a", "counter", `Help with \\ and \n.`, true}, {"b", "gauge", "B.", true}, {"c", "untyped", "", false}}
	if len(snap.families) != len(want) {
		t.Fatalf("got %d families; want %d", len(snap.families), len(want))
	}
	for i, w := range want {
		f := snap.families[i]
		if f.name != w.name || f.typ != w.typ || f.help != w.help || f.hasHelp != w.hasHelp {
			t.Errorf("got family %q %q %q %v; want %q %q %q %v", f.name, f.typ, f.help, f.hasHelp, w.name, w.typ, w.help, w.hasHelp)
		}
	}
}

func TestParseRejects(t *testing.T) {
	long := strings.Repeat("x", 2049)
	labels := func(n int) string { // a series with n labels
		var b strings.Builder
		b.WriteString("a{")
		for i := range n {
			fmt.Fprintf(&b, "l%d=\"1\",", i)
		}
		b.WriteString("} 1\n")
		return b.String()
	}
	tests := []struct {
		name   string
		body   string
		meta   func(*Meta)
		reason string
		line   string // in the message, when not ""
	}{
		{"timestamp", "a 1 1700000000000\n", nil, ReasonSampleTimestamp, "line 1"},
		{"metric name", "1a 1\n", nil, ReasonMetricName, "line 1"},
		{"metric name dash", "a-b 1\n", nil, ReasonMetricName, ""},
		{"help metric name", "# HELP 1a x\n", nil, ReasonMetricName, ""},
		{"label name", "a{1b=\"x\"} 1\n", nil, ReasonLabelName, ""},
		{"label name dash", "a{b-c=\"x\"} 1\n", nil, ReasonLabelName, ""},
		{"label name reserved", "a{__b=\"x\"} 1\n", nil, ReasonLabelName, ""},
		{"label name __name__", "a{__name__=\"x\"} 1\n", nil, ReasonLabelName, ""},
		{"duplicate label", "a{b=\"1\",b=\"2\"} 1\n", nil, ReasonDuplicateSeries, ""},
		{"duplicate series", "a{b=\"1\"} 1\na{b=\"1\"} 2\n", nil, ReasonDuplicateSeries, "line 2"},
		{"duplicate series reordered", "a{b=\"1\",c=\"2\"} 1\na{c=\"2\",b=\"1\"} 2\n", nil, ReasonDuplicateSeries, "line 2"},
		{"duplicate after export", "a{job=\"x\"} 1\na{exported_job=\"x\"} 2\n", nil, ReasonDuplicateSeries, "line 2"},
		{"histogram after its sum", "# TYPE h histogram\nh_sum 1\nh_count 1\nh_sum_x 1\n# TYPE h_sum untyped\n", nil, ReasonMalformed, "line 5"},
		{"too many labels with job instance project", labels(30), nil, ReasonTooManyLabels, ""},
		{"too many labels pushed", labels(33), nil, ReasonTooManyLabels, ""},
		{"label value too long", "a{b=\"" + long + "\"} 1\n", nil, ReasonLabelValueTooLong, ""},
		{"ancient", "a 1\n", func(m *Meta) { m.Time = testNow.Add(-2 * time.Hour) }, ReasonAncientTimestamp, ""},
		{"future", "a 1\n", func(m *Meta) { m.Time = testNow.Add(10 * time.Minute) }, ReasonFutureTimestamp, ""},
		{"no value", "a\n", nil, ReasonMalformed, "line 1"},
		{"bad value", "a 1x\n", nil, ReasonMalformed, ""},
		{"hex value", "a 0x1p3\n", nil, ReasonMalformed, ""},
		{"trailing junk", "a 1 2 3\n", nil, ReasonMalformed, ""},
		{"unclosed labels", "a{b=\"1\" 1\n", nil, ReasonMalformed, ""},
		{"unclosed value", "a{b=\"1} 1\n", nil, ReasonMalformed, ""},
		{"unquoted value", "a{b=1} 1\n", nil, ReasonMalformed, ""},
		{"bad escape", "a{b=\"\\t\"} 1\n", nil, ReasonMalformed, ""},
		{"bad help escape", "# HELP a x\\t\n", nil, ReasonMalformed, ""},
		{"invalid utf8", "a{b=\"\xff\"} 1\n", nil, ReasonMalformed, ""},
		{"second help", "# HELP a x\n# HELP a y\n", nil, ReasonMalformed, "line 2"},
		{"second type", "# TYPE a gauge\n# TYPE a gauge\n", nil, ReasonMalformed, "line 2"},
		{"type after samples", "a 1\n# TYPE a gauge\n", nil, ReasonMalformed, "line 2"},
		{"unknown type", "# TYPE a gaug\n", nil, ReasonMalformed, ""},
		{"interleaved", "a 1\nb 1\na{x=\"1\"} 1\n", nil, ReasonMalformed, "line 3"},
		{"interleaved histogram", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nb 1\nh_count 1\n", nil, ReasonMalformed, "line 4"},
		{"bucket without le", "# TYPE h histogram\nh_bucket 1\n", nil, ReasonMalformed, ""},
		{"bucket bad le", "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", nil, ReasonMalformed, ""},
		{"negative bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} -1\n", nil, ReasonMalformed, ""},
		{"negative count", "# TYPE h histogram\nh_count -1\n", nil, ReasonMalformed, ""},
		{"bucket le NaN", "# TYPE h histogram\nh_bucket{le=\"NaN\"} 1\n", nil, ReasonMalformed, ""},
		{"bare histogram sample", "# TYPE h histogram\nh 1\n", nil, ReasonMalformed, ""},
		{"summary without quantile", "# TYPE s summary\ns 1\n", nil, ReasonMalformed, ""},
		{"histogram sum with le", "# TYPE h histogram\nh_sum{le=\"1\"} 1\n", nil, ReasonMalformed, ""},
		{"summary count with quantile", "# TYPE s summary\ns_count{quantile=\"1\"} 1\n", nil, ReasonMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			meta := testMeta("web-01", 1)
			if tt.meta != nil {
				tt.meta(&meta)
			}
			snap, err := Parse([]byte(tt.body), meta, testLimits(t), testNow)
			var rej *Rejection
			if !errors.As(err, &rej) {
				t.Fatalf("got %v, %v; want a rejection %s", snap, err, tt.reason)
			}
			if rej.Reason != tt.reason || rej.Status != http.StatusBadRequest {
				t.Errorf("got %d %s (%v); want 400 %s", rej.Status, rej.Reason, err, tt.reason)
			}
			if tt.line != "" && !strings.Contains(err.Error(), tt.line) {
				t.Errorf("got message %q; want it to name %s", err, tt.line)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got message %q; want one line", err)
			}
		})
	}
}

func TestParseSeriesLimit(t *testing.T) {
	lim := testLimits(t)
	lim.MaxSeriesPerPush = 2
	// The third series passes the limit; the malformed line after it is never read.
	_, err := Parse([]byte("a 1\nb 1\nc 1\n{{{\n"), testMeta("web-01", 1), lim, testNow)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Status != http.StatusRequestEntityTooLarge || rej.Reason != ReasonSeriesLimit {
		t.Fatalf("got %v; want a 413 series_limit rejection", err)
	}
	if _, err := Parse([]byte("a 1\nb 1\n"), testMeta("web-01", 1), lim, testNow); err != nil {
		t.Fatalf("got %v for 2 series; want none", err)
	}
}

func TestEachSample(t *testing.T) {
	body := "# TYPE h histogram\nh_bucket{le=\"+Inf\",A=\"x\"} 2\nh_sum 3.5\nh_count 2\nq{v=\"a\\\"b\\\\c\\nd\",job=\"j\"} NaN\n"
	snap, err := Parse([]byte(body), testMeta("web-01", 1), testLimits(t), testNow)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	snap.EachSample(func(ls []Label, v float64) {
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(l.Name + "=" + l.Value + ";")
		}
		if math.IsNaN(v) {
			b.WriteString(" NaN")
		} else {
			b.WriteString(" " + strings.TrimSpace(string(appendValue(nil, v))))
		}
		got = append(got, b.String())
	})
	want := []string{
		"A=x;__name__=h_bucket;instance=web-01;job=agent;le=+Inf;project=shop; 2",
		"__name__=h_sum;instance=web-01;job=agent;project=shop; 3.5",
		"__name__=h_count;instance=web-01;job=agent;project=shop; 2",
		"__name__=q;exported_job=j;instance=web-01;job=agent;project=shop;v=a\"b\\c\nd; NaN",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseTestdata(t *testing.T) {
	for _, name := range []string{"agent.prom", "handwritten.prom"} {
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile("testdata/" + name)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := Parse(body, testMeta("web-01", 1), testLimits(t), testNow)
			if err != nil {
				t.Fatalf("got error %v; want none", err)
			}
			if snap.Series == 0 {
				t.Errorf("got 0 series; want some")
			}
		})
	}
}
