package host

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fixture is a collector on a test registry, with a clock the test moves
// and the agent's series counters.
type fixture struct {
	c                 *Collector
	reg               *prometheus.Registry
	now               time.Time
	overflow, expired *prometheus.CounterVec
}

func newFixture(t testing.TB, cfg Config, ttl time.Duration) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), now: time.Unix(1_800_000_000, 0)}
	f.overflow = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitville_agent_series_overflow_total", Help: "Label values counted as other, by label."}, []string{"label"})
	f.expired = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bitville_agent_series_expired_total", Help: "Label values removed when idle, by label."}, []string{"label"})
	f.reg.MustRegister(f.overflow, f.expired)
	f.c = New(Options{Config: cfg, SeriesTTL: ttl, Now: func() time.Time { return f.now }, SeriesOverflow: f.overflow, SeriesExpired: f.expired}, f.reg)
	return f
}

// scan reads the fixture tree dir (under testdata) at the fixture's clock
// plus d.
func (f *fixture) scan(dir string, d time.Duration) {
	f.now = f.now.Add(d)
	f.c.scanner.procPath = "testdata/" + dir
	f.c.Scan()
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.ProcPath = "testdata/scan1"
	return cfg
}
