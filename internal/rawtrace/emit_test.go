package rawtrace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promtest"
)

func TestEmitDropsWhatCannotBeKept(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxLineBytes = 1 << 10
	sink := newFakeSink("loki")
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{}, reg, sink)
	if err != nil {
		t.Fatal(err)
	}
	big := testEvent("big", PriorityError)
	big.Line = json.RawMessage(fmt.Sprintf(`{"id":"big","pad":%q}`, make([]byte, 2<<10)))
	p.Emit(big)
	bad := testEvent("bad", PriorityError)
	bad.Line = json.RawMessage(`{"id":`)
	p.Emit(bad)
	p.Emit(testEvent("ok", PriorityError))

	for _, c := range []struct {
		reason string
		want   float64
	}{{reasonTooLarge, 1}, {reasonInvalid, 1}, {reasonRateLimited, 0}} {
		if got := metric(t, reg, `bitville_events_dropped_total{reason=`+c.reason+`,sink=}`); got != c.want {
			t.Errorf("dropped_total{reason=%q} = %v; want %v", c.reason, got, c.want)
		}
	}
	if got := metric(t, reg, "bitville_events_total{kind=request,priority=error}"); got != 1 {
		t.Errorf("events_total{kind=request,priority=error} = %v; want 1", got)
	}
	if got := metric(t, reg, "bitville_events_queued{sink=loki}"); got != 1 {
		t.Errorf("queued = %v; want 1", got)
	}
	p.closeSpools()
}

func TestKindsAreBounded(t *testing.T) {
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{}, reg, newFakeSink("loki"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.closeSpools()
	for i := range eventKinds + 10 {
		e := testEvent(fmt.Sprint("k", i), PrioritySampled)
		e.Kind = fmt.Sprint("kind", i)
		p.Emit(e)
	}
	if got := metric(t, reg, "bitville_events_total{kind=other,priority=sampled}"); got != 10 {
		t.Errorf("events_total{kind=other} = %v; want 10", got)
	}
	n := 0
	for k := range promtest.Series(t, reg, "bitville_events_total") {
		if strings.HasPrefix(k, "bitville_events_total{") {
			n++
		}
	}
	if got, want := n, (eventKinds+1)*int(numPriorities); got != want {
		t.Errorf("events_total has %d series; want %d", got, want)
	}
}

func TestRateLimitKeepsErrorsFirst(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit = 1
	cfg.RateBurst = 100
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	p, err := NewWithSinks(cfg, Options{Now: func() time.Time { return now }}, reg, newFakeSink("loki"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.closeSpools()
	const each = 100
	for i := range each {
		for prio := range numPriorities {
			p.Emit(testEvent(fmt.Sprint(prio, "-", i), prio))
		}
	}
	got := map[Priority]float64{}
	var total float64
	for prio := range numPriorities {
		got[prio] = metric(t, reg, "bitville_events_total{kind=request,priority="+prio.String()+"}")
		total += got[prio]
	}
	if !(got[PriorityError] > got[PrioritySlow] && got[PrioritySlow] > got[PrioritySampled]) {
		t.Errorf("accepted by priority %v; want error > slow > sampled", got)
	}
	if total != float64(cfg.RateBurst) {
		t.Errorf("accepted %v in one instant; want the burst %d", total, cfg.RateBurst)
	}
	if d := metric(t, reg, `bitville_events_dropped_total{reason=`+reasonRateLimited+`,sink=}`); d != 3*each-total {
		t.Errorf("rate_limited = %v; want %v", d, 3*each-total)
	}
	// Another project has a bucket of its own.
	other := testEvent("other", PrioritySampled)
	other.Project = "blog"
	p.Emit(other)
	if d := metric(t, reg, `bitville_events_dropped_total{reason=`+reasonRateLimited+`,sink=}`); d != 3*each-total {
		t.Errorf("an event of another project was rate limited")
	}
}

func BenchmarkEmit(b *testing.B) {
	cfg := testConfig(b)
	p, err := NewWithSinks(cfg, Options{}, prometheus.NewRegistry(), newFakeSink("loki"))
	if err != nil {
		b.Fatal(err)
	}
	defer p.closeSpools()
	e := testEvent("bench", PrioritySlow)
	// The agent's golden request line: 2.5 KB, four statements with their
	// call sites, stacks and wall entries.
	line, err := os.ReadFile(filepath.Join("..", "..", "exporters", "phpagent", "testdata", "events", "request.json"))
	if err != nil {
		b.Fatal(err)
	}
	e.Line = bytes.TrimSpace(line)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.Emit(e)
	}
}
