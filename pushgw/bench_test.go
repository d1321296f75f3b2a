package pushgw

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// benchSeries is the size of one benchmarked push, benchInstances the
// number of instances of the benchmarked store.
const (
	benchSeries    = 10000
	benchInstances = 100
)

// synthBody returns an agent-like push of about n series: counters by
// endpoint and status, and histograms of 11 buckets by endpoint.
func synthBody(n int) []byte {
	var b strings.Builder
	series := 0
	buckets := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	for f := 0; series < n; f++ {
		if f%2 == 0 {
			fmt.Fprintf(&b, "# HELP bitville_bench_requests_%d_total Requests finished.\n# TYPE bitville_bench_requests_%d_total counter\n", f, f)
			for e := 0; e < 100 && series < n; e++ {
				fmt.Fprintf(&b, "bitville_bench_requests_%d_total{endpoint=\"/api/v1/endpoint/%d\",method=\"GET\",status=\"200\"} %d\n", f, e, 1000+e*7)
				series++
			}
			continue
		}
		fmt.Fprintf(&b, "# HELP bitville_bench_duration_%d_seconds Wall time.\n# TYPE bitville_bench_duration_%d_seconds histogram\n", f, f)
		for e := 0; e < 20 && series < n; e++ {
			for i, le := range buckets {
				fmt.Fprintf(&b, "bitville_bench_duration_%d_seconds_bucket{endpoint=\"/api/v1/endpoint/%d\",le=\"%s\"} %d\n", f, e, le, i*10+e)
			}
			fmt.Fprintf(&b, "bitville_bench_duration_%d_seconds_sum{endpoint=\"/api/v1/endpoint/%d\"} %g\n", f, e, 12.5+float64(e))
			fmt.Fprintf(&b, "bitville_bench_duration_%d_seconds_count{endpoint=\"/api/v1/endpoint/%d\"} %d\n", f, e, 110+e)
			series += len(buckets) + 2
		}
	}
	return []byte(b.String())
}

func BenchmarkParseApply(b *testing.B) {
	body := synthBody(benchSeries)
	lim := testLimits(b)
	s := NewStore(lim, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var series int
	seq := uint64(0)
	for b.Loop() {
		seq++
		meta := testMeta("web-01", seq)
		snap, err := Parse(body, meta, lim, testNow)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Apply(snap, testNow); err != nil {
			b.Fatal(err)
		}
		series = snap.Series
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/sec, "pushes/s")
	b.ReportMetric(float64(b.N*series)/sec, "samples/s")
}

// benchStore returns a store of benchInstances instances with
// benchSeries series each.
func benchStore(b *testing.B) *Store {
	b.Helper()
	body := synthBody(benchSeries)
	lim := testLimits(b)
	lim.MaxSeriesPerProject = benchInstances * benchSeries * 2
	s := NewStore(lim, 0)
	for i := range benchInstances {
		snap, err := Parse(body, testMeta(fmt.Sprintf("web-%03d.example.com", i), 1), lim, testNow)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Apply(snap, testNow); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkWriteTo(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	var n int64
	for b.Loop() {
		var err error
		if n, err = s.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(n)
	b.ReportMetric(float64(benchInstances*benchSeries), "series")
}

// BenchmarkStoreMemory reports the heap a store holds per series.
func BenchmarkStoreMemory(b *testing.B) {
	b.ReportAllocs()
	var perSeries float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := benchStore(b)
		runtime.GC()
		runtime.ReadMemStats(&after)
		series := s.ProjectSeries()["shop"]
		perSeries = float64(after.HeapAlloc-before.HeapAlloc) / float64(series)
		runtime.KeepAlive(s)
		s.Expire(testNow.Add(time.Hour))
	}
	b.ReportMetric(perSeries, "bytes/series")
}
