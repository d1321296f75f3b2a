package rawtrace

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promtest"
	"github.com/bitville/bitville-apm/internal/stack"
)

// BenchmarkPushVictoriaLogs measures how many events a second the whole
// pipeline (Emit, spool, batches, encoding, HTTP) delivers to a real Loki
// push receiver, VictoriaLogs on loopback: b.N realistic request events
// (the agent's golden request line, 2.5 KB, with a fresh correlation id
// each) emitted at once, timed until the last is acknowledged. Run with
// -cpu 1 for the rate of one core; VictoriaLogs runs in its own process.
func BenchmarkPushVictoriaLogs(b *testing.B) {
	if _, err := stack.VictoriaLogsBinary(); err != nil {
		b.Skip(err)
	}
	line, err := os.ReadFile(filepath.Join("..", "..", "exporters", "phpagent", "testdata", "events", "request.json"))
	if err != nil {
		b.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	vl, err := stack.StartVictoriaLogs(ctx, stack.VictoriaLogsConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = vl.Stop() }()

	for _, format := range []string{LokiFormatProtobuf, LokiFormatJSON} {
		b.Run(format, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.LokiURL = vl.PushURL()
			cfg.LokiFormat = format
			cfg.BatchWait = 100 * time.Millisecond
			reg := prometheus.NewRegistry()
			p, err := New(cfg, Options{Job: "bitville-apm-agent", Instance: "bench"}, reg)
			if err != nil {
				b.Fatal(err)
			}
			events := make([]Event, b.N)
			for i := range events {
				cid := fmt.Sprintf("bench-%s-%d-%d", format, b.N, i)
				fields["correlation_id"] = cid
				l, _ := json.Marshal(fields)
				events[i] = Event{Kind: "request", Level: LevelWarning, Priority: PrioritySlow, Project: "shop",
					Time: time.Now(), Summary: "GET /orders/{id} 200 2.31s slow", IDs: IDs{CorrelationID: cid, RequestID: cid}, Line: l}
			}
			b.ResetTimer()
			start := time.Now()
			stop := p.Start()
			for i := range events {
				p.Emit(events[i])
			}
			for promtest.Series(b, reg, "bitville_events_sent_total")[`bitville_events_sent_total{sink=loki}`] < float64(b.N) {
				time.Sleep(5 * time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
			if f := promtest.Series(b, reg, "bitville_events_push_failures_total")[`bitville_events_push_failures_total{sink=loki}`]; f > 0 {
				b.Fatalf("%v pushes failed", f)
			}
		})
	}
}
