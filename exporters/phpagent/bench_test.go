package phpagent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/protocol"
)

// realisticEnd returns an end message like a busy Phalcon endpoint sends:
// 20 SQL statements of 8 shapes, 50 functions, 3 stacks, about 8 KiB.
func realisticEnd(t testing.TB, i int) []byte {
	var m map[string]any
	if err := json.Unmarshal(golden(t, "end.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["id"] = fmt.Sprintf("req%08d", i)
	m["pid"] = 1000 + i%64
	m["endpoint"] = fmt.Sprintf("GET /orders/{id}/v%d", i%20)
	sql := m["sql"].([]any)
	for j, s := range sql {
		q := s.(map[string]any)
		// Longer, realistic statement texts with a sqlcommenter tag.
		q["q"] = q["q"].(string) + fmt.Sprintf(" /*endpoint='GET%%20%%2Forders%%2F%%7Bid%%7D',controller='orders',action='show%d'*/", j%4)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkHandleEnd measures decoding and aggregating one realistic end
// message: the agent's per-request cost. Run with -cpu 1 for one core.
func BenchmarkHandleEnd(b *testing.B) { benchHandleEnd(b, false, false) }

// BenchmarkHandleEndNative is BenchmarkHandleEnd with native histograms on
// (--metrics.native-histograms): what that option costs per message.
func BenchmarkHandleEndNative(b *testing.B) { benchHandleEnd(b, true, false) }

// BenchmarkHandleEndShipping is BenchmarkHandleEnd with raw traces on
// (ShipTo): the messages are neither failed, slow nor forced, so this is
// what the selection costs a request that is not shipped.
func BenchmarkHandleEndShipping(b *testing.B) { benchHandleEnd(b, false, true) }

func benchHandleEnd(b *testing.B, native, ship bool) {
	a, _ := newTestAgent(b, func(c *Config) { c.NativeBuckets = native })
	var c collector
	if ship {
		a.ShipTo(&c, 0)
	}
	msgs := make([][]byte, 64)
	for i := range msgs {
		msgs[i] = realisticEnd(b, i)
	}
	st := &readerState{}
	for _, m := range msgs { // warm the caches and create the series
		a.Handle(m, st)
	}
	b.SetBytes(int64(len(msgs[0])))
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		a.Handle(msgs[i%len(msgs)], st)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if len(c.events) != 0 {
		b.Fatalf("shipped %d events; want none", len(c.events))
	}
}

// BenchmarkApplyEndWall measures aggregating one decoded end message (the
// golden end.json: 20 statements, 50 functions) without a wall_fn array and
// with 10 entries: what the wall-time family costs per message.
func BenchmarkApplyEndWall(b *testing.B) {
	var d protocol.Decoder
	var base protocol.Message
	if err := d.Decode(golden(b, "end.json"), &base); err != nil {
		b.Fatal(err)
	}
	fps := fpsOf(&base)
	wall := make([]protocol.WallEntry, 10)
	for i := range wall {
		wall[i] = protocol.WallEntry{Function: fmt.Sprintf(`App\Service%d::call`, i), Caller: `App\Controllers\OrdersController::showAction`, Seconds: 0.01}
	}
	wall[0].Function = "session_start"
	for _, n := range []int{0, 10} {
		b.Run(fmt.Sprintf("wall=%d", n), func(b *testing.B) {
			a, _ := newTestAggregator(b, DefaultConfig().Limits)
			m := base
			m.WallFunctions = wall[:n]
			a.ApplyEnd(&m, fps, t0) // create the series
			b.ReportAllocs()
			for b.Loop() {
				a.ApplyEnd(&m, fps, t0)
			}
		})
	}
}

// BenchmarkHandleEndParallel is BenchmarkHandleEnd from several readers, as
// the socket server runs it.
func BenchmarkHandleEndParallel(b *testing.B) {
	a, _ := newTestAgent(b, nil)
	msgs := make([][]byte, 64)
	for i := range msgs {
		msgs[i] = realisticEnd(b, i)
	}
	warm := &readerState{}
	for _, m := range msgs {
		a.Handle(m, warm)
	}
	b.SetBytes(int64(len(msgs[0])))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		st := &readerState{}
		i := 0
		for pb.Next() {
			a.Handle(msgs[i%len(msgs)], st)
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// populate fills an agent until its exposition has about n samples: 100
// endpoints, their histograms and counters, and a new function and query per
// message (histograms for the top ones).
func populate(b *testing.B, a *Agent, reg *prometheus.Registry, n int) int {
	st := &readerState{}
	for i := 0; ; i++ {
		msg := fmt.Sprintf(`{"v":1,"type":"end","id":"r%d","pid":%d,"project":"shop","ts":1764294512,"method":"GET","endpoint":"GET /e%d","started":1764294512,"status":200,"wall":0.05,"cpu_user":0.01,"mem_peak":4194304,"sql":[{"q":"SELECT * FROM t%d WHERE id = 1","d":0.001}],"fn":[{"n":"App\\F%d::run","self":0.01,"incl":0.02}]}`,
			i, 1+i%100, i%100, i, i)
		a.Handle([]byte(msg), st)
		if i%50 == 0 {
			if got := countSamples(b, a, reg); got >= n {
				return got
			}
		}
	}
}

func countSamples(b *testing.B, a *Agent, reg *prometheus.Registry) int {
	rec := httptest.NewRecorder()
	a.metricsHandler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	n := 0
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// BenchmarkScrape10kSeries renders /metrics holding 10,000 series (sample
// lines: each histogram bucket is a series, as Prometheus counts them), a
// histogram-heavy mix like the agent's real exposition.
func BenchmarkScrape10kSeries(b *testing.B) {
	a, reg := newTestAgent(b, func(c *Config) { c.Limits.TopQueries, c.Limits.TopFunctions = 1000, 1000 })
	n := populate(b, a, reg, 10000)
	h := a.metricsHandler(reg)
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		_, _ = io.Copy(io.Discard, rec.Body)
	}
	b.ReportMetric(float64(n), "series")
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/scrape")
}

// BenchmarkTraceReasons measures the raw-trace selection alone on the
// golden end message (a request neither failed, slow nor forced), with
// and without a sample rate: the whole cost a request that is not shipped
// pays when raw traces are on.
func BenchmarkTraceReasons(b *testing.B) {
	m := decodeGolden(b, "end.json")
	for _, rate := range []float64{0, 0.01} {
		b.Run(fmt.Sprintf("rate=%v", rate), func(b *testing.B) {
			tr := newTracer(Traces{SlowThreshold: time.Second, SampleRate: rate, ProfileFunctions: 300}, discardLog)
			tr.draw = func() float64 { return 0.5 }
			b.ReportAllocs()
			for b.Loop() {
				if tr.reasons(m) != 0 {
					b.Fatal("selected")
				}
			}
		})
	}
}

// BenchmarkTraceRequestEvent measures building the request event of the
// golden end message (20 statements): what a shipped request costs on top.
func BenchmarkTraceRequestEvent(b *testing.B) {
	a, _ := newTestAgent(b, nil)
	m := decodeGolden(b, "end.json")
	fps := agentFPs(a, m)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := requestEvent(&a.traces, m, fps, reasonSlow); err != nil {
			b.Fatal(err)
		}
	}
}
