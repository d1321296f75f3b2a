package rawtrace_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// printSink prints what it is sent and ends the run once it has want events.
type printSink struct {
	want int
	done context.CancelFunc
}

func (s *printSink) Name() string { return "loki" }
func (s *printSink) Close() error { return nil }
func (s *printSink) Send(_ context.Context, batch []rawtrace.Event) error {
	for _, e := range batch {
		fmt.Printf("%s %s: %s\n", s.Name(), e.Priority, e.Line)
	}
	if s.want -= len(batch); s.want <= 0 {
		s.done()
	}
	return nil
}

func ExampleNewWithSinks() {
	var cfg rawtrace.Config
	flagdefaults.Must(&cfg)
	cfg.BatchWait = 10 * time.Millisecond
	dir, err := os.MkdirTemp("", "bitville-spool")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctx, cancel := context.WithCancel(context.Background())
	p, err := rawtrace.NewWithSinks(cfg, rawtrace.Options{Job: "bitville-apm-agent", SpoolDir: dir}, prometheus.NewRegistry(), &printSink{want: 2, done: cancel})
	if err != nil {
		panic(err)
	}
	p.Emit(rawtrace.Event{Kind: "request", Level: rawtrace.LevelWarning, Priority: rawtrace.PrioritySlow, Project: "shop",
		Line: json.RawMessage(`{"kind":"request","level":"warning","project":"shop","wall":2.31}`)})
	p.Emit(rawtrace.Event{Kind: "abandoned", Level: rawtrace.LevelError, Priority: rawtrace.PriorityError, Project: "shop",
		Line: json.RawMessage(`{"kind":"abandoned","level":"error","project":"shop","reason":"pid_gone"}`)})
	p.Run(ctx) // until the sink has both; the more important first
	// Output:
	// loki error: {"kind":"abandoned","level":"error","project":"shop","reason":"pid_gone"}
	// loki slow: {"kind":"request","level":"warning","project":"shop","wall":2.31}
}
