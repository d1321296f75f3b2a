package pgexporter

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/sqlfp"
)

func TestParseEndpoint(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT 1 /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/":                    "GET /orders/{id}",
		"SELECT 1 /*controller='x',endpoint='POST%20%2Fpay',traceparent='00'*/": "POST /pay",
		"/* plain */ SELECT 1 /*endpoint='CLI%20cron.php'*/":                    "CLI cron.php",
		"SELECT 1":                      "",
		"SELECT 1 /*endpoint=nope*/":    "",
		"SELECT 1 /*endpoint='%zz'*/":   "",
		"SELECT 1 /*endpoint='GET%20/x": "", // cut by track_activity_query_size
	} {
		if got := parseEndpoint(q); got != want {
			t.Errorf("parseEndpoint(%q) = %q; want %q", q, got, want)
		}
	}
}

// holdQuery runs sql again and again on a connection of its own until the
// test ends, so that the sampler always finds it running.
func holdQuery(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		defer c.Close(context.Background())
		for ctx.Err() == nil {
			_, _ = c.Exec(ctx, sql)
		}
	}()
}

// runBackground starts the sampler; it is stopped (and waited for) when
// the test ends.
func runBackground(t *testing.T, e *Exporter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.RunBackground(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitFor scrapes reg until ok says yes, for up to a minute.
func waitFor(t *testing.T, e *Exporter, reg *prometheus.Registry, what string, ok func(m map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		m := gather(t, reg)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 45s for %s\n%s%s%s", what, errText(e), dump(m, "bitville_pg_session"), dump(m, "bitville_pg_activity"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestActivity(t *testing.T) {
	pg := startPG(t)
	dsn := pg.DSN("postgres")
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	fast := func(c *Config) { c.ActivityInterval = 100 * time.Millisecond }

	t.Run("sleeping session", func(t *testing.T) {
		e, reg := newTestExporter(t, fast, dsn)
		holdQuery(t, dsn, "SELECT pg_sleep(3) /*endpoint='GET%20%2Fslow'*/")
		runBackground(t, e)
		fp := sqlfp.Fingerprint("SELECT pg_sleep(3)").Fingerprint
		key := "bitville_pg_session_samples_total{datname=postgres,endpoint=GET /slow,query_fp=" + fp +
			",server=" + server + ",state=active,wait_event=PgSleep,wait_event_type=Timeout}"
		m := waitFor(t, e, reg, key+" >= 3", func(m map[string]float64) bool { return m[key] >= 3 })
		if got := m["bitville_pg_active_sessions{datname=postgres,server="+server+",state=active,wait_event_type=Timeout}"]; got < 1 {
			t.Errorf("active_sessions Timeout: got %v; want ≥ 1\n%s", got, dump(m, "bitville_pg_active_sessions"))
		}
		if got := m["bitville_pg_activity_samples_total{result=ok,server="+server+"}"]; got < 3 {
			t.Errorf("activity samples ok: got %v; want ≥ 3", got)
		}
		if _, ok := m["bitville_pg_longest_query_seconds{datname=postgres,server="+server+"}"]; !ok {
			t.Errorf("no longest_query_seconds\n%s", dump(m, "bitville_pg_longest"))
		}
		// The exporter's own sessions are never sampled: every sample
		// counted is the sleeping one.
		for k := range m {
			if strings.HasPrefix(k, "bitville_pg_session_samples_total{") && strings.Contains(k, "pg_stat_activity") {
				t.Errorf("the sampler sampled itself: %s", k)
			}
		}
	})

	t.Run("idle in transaction", func(t *testing.T) {
		e, reg := newTestExporter(t, fast, dsn)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		runBackground(t, e)
		idle := "bitville_pg_idle_in_transaction_sessions{datname=postgres,server=" + server + "}"
		oldest := "bitville_pg_oldest_transaction_seconds{datname=postgres,server=" + server + ",state=idle in transaction}"
		m := waitFor(t, e, reg, idle+" ≥ 1 and "+oldest+" > 0", func(m map[string]float64) bool { return m[idle] >= 1 && m[oldest] > 0 })
		if _, ok := m["bitville_pg_idle_in_transaction_seconds_max{datname=postgres,server="+server+"}"]; !ok {
			t.Errorf("no idle_in_transaction_seconds_max")
		}
		// Waiting for its client (wait_event_type Client on PostgreSQL
		// 14+, "none" before).
		n := 0.0
		for k, v := range m {
			if strings.HasPrefix(k, "bitville_pg_active_sessions{datname=postgres,server="+server+",state=idle in transaction,") {
				n += v
			}
		}
		if n < 1 {
			t.Errorf("active_sessions idle in transaction: got %v; want ≥ 1\n%s", n, dump(m, "bitville_pg_active_sessions"))
		}
		// The transaction ends: its groups disappear at the next sample.
		if _, err := c.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, e, reg, "the idle-in-transaction gauges to go", func(m map[string]float64) bool {
			_, a := m[idle]
			_, b := m[oldest]
			return !a && !b
		})
	})

	t.Run("label limit", func(t *testing.T) {
		e, reg := newTestExporter(t, func(c *Config) { fast(c); c.LabelLimit = 1 }, dsn)
		holdQuery(t, dsn, "SELECT pg_sleep(3)")
		holdQuery(t, dsn, "SELECT pg_sleep(3), 'another statement'")
		runBackground(t, e)
		over := "bitville_pg_session_label_overflow_total{label=query_fp,server=" + server + "}"
		m := waitFor(t, e, reg, "a query_fp counted as other", func(m map[string]float64) bool {
			if m[over] < 1 {
				return false
			}
			for k, v := range m {
				if strings.HasPrefix(k, "bitville_pg_session_samples_total{") && strings.Contains(k, ",query_fp=other,") && v > 0 {
					return true
				}
			}
			return false
		})
		fps := map[string]bool{}
		for k := range m {
			if strings.HasPrefix(k, "bitville_pg_session_samples_total{") {
				i := strings.Index(k, ",query_fp=") + len(",query_fp=")
				fps[k[i:i+strings.IndexByte(k[i:], ',')]] = true
			}
		}
		if len(fps) != 2 || !fps["other"] {
			t.Errorf("query_fp values: got %v; want one fingerprint and other", fps)
		}
	})

	t.Run("stops", func(t *testing.T) {
		e, reg := newTestExporter(t, fast, dsn)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.RunBackground(ctx) }()
		waitFor(t, e, reg, "a sample", func(m map[string]float64) bool {
			return m["bitville_pg_activity_samples_total{result=ok,server="+server+"}"] >= 1
		})
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("RunBackground did not return 30s after its context ended")
		}
	})
}

// errText is the last sampling error and the collector errors of the
// last scrape of e, for failure messages.
func errText(e *Exporter) string {
	var b strings.Builder
	for _, s := range e.servers {
		for _, r := range s.results {
			if r.err != nil {
				b.WriteString("collector " + r.name + ": " + r.err.Error() + "\n")
			}
		}
		for _, c := range s.collectors {
			if a, ok := c.(*activity); ok {
				a.mu.Lock()
				if a.lastErr != nil {
					b.WriteString("last sampling error: " + a.lastErr.Error() + "\n")
				}
				a.mu.Unlock()
			}
		}
	}
	return b.String()
}

// The sampler leaves out the exporter's own scrape sessions: a scrape
// connection busy with a query is not an active session of the
// application.
func TestActivityLeavesOutScrapeSessions(t *testing.T) {
	pg := startPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	scrapes, err := newServer(pg.DSN("postgres"), 5*time.Second, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer scrapes.close()
	sampler, err := newServer(pg.DSN("postgres"), 5*time.Second, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.close()
	// A scrape connection running a long query.
	busy := make(chan error, 1)
	go func() {
		busy <- scrapes.with(ctx, func(ctx context.Context, c *pgx.Conn, _ int) error {
			_, err := c.Exec(ctx, "SELECT pg_sleep(3)")
			return err
		})
	}()
	sleeping := func() bool {
		return exec(t, pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)' AND state = 'active'") == "1"
	}
	for deadline := time.Now().Add(10 * time.Second); !sleeping(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the scrape connection's query did not start")
		}
	}
	fp := sqlfp.Fingerprint("SELECT pg_sleep(3)").Fingerprint
	counted := func(a *activity) float64 {
		a.mu.Lock()
		defer a.mu.Unlock()
		n := 0.0
		for k, v := range a.samples {
			if k.fp == fp {
				n += v
			}
		}
		return n
	}
	withOwn, without := newActivity(DefaultConfig()), newActivity(DefaultConfig())
	withOwn.sampleOnce(ctx, sampler, scrapes, 5*time.Second)
	without.sampleOnce(ctx, sampler, nil, 5*time.Second)
	if withOwn.lastErr != nil || without.lastErr != nil {
		t.Fatalf("sampling failed: %v, %v", withOwn.lastErr, without.lastErr)
	}
	if got := counted(withOwn); got != 0 {
		t.Errorf("the scrape session was sampled %v times; want 0", got)
	}
	if got := counted(without); got != 1 {
		t.Errorf("told nothing of the scrapes, the sampler counted the session %v times; want 1 (the test's premise)", got)
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
}

// TestActivityLabelsExpire: a query_fp or endpoint value unseen for the
// label TTL gives its label back, with its sample series; without a TTL
// the first values keep their labels and later ones stay "other".
func TestActivityLabelsExpire(t *testing.T) {
	const ttl = 10 * time.Minute
	qa := "SELECT a FROM t /*endpoint='GET%20%2Fa'*/"
	qb := "SELECT b FROM t /*endpoint='GET%20%2Fb'*/"
	fpA, fpB := sqlfp.Fingerprint(qa).Fingerprint, sqlfp.Fingerprint(qb).Fingerprint
	row := func(q string) []actRow {
		return []actRow{{datname: "db", state: "active", query: q}}
	}
	// samples returns the session samples as fp/endpoint → count, and the
	// overflow counters.
	samples := func(a *activity) (map[string]float64, float64, float64) {
		a.mu.Lock()
		defer a.mu.Unlock()
		m := map[string]float64{}
		for k, v := range a.samples {
			m[k.fp+"/"+k.endpoint] += v
		}
		return m, float64(a.fpOverflow), float64(a.epOverflow)
	}
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name       string
		ttl        time.Duration
		want       map[string]float64
		fpOverflow float64
	}{
		{"ttl", ttl, map[string]float64{"other/other": 1, fpB + "/GET /b": 1}, 1},
		{"never", 0, map[string]float64{fpA + "/GET /a": 1, "other/other": 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.LabelLimit, cfg.LabelTTL = 1, tc.ttl
			a := newActivity(cfg)
			a.fold(row(qa), 1024, t0, 0)                      // a gets the labels
			a.fold(row(qb), 1024, t0.Add(time.Minute), 0)     // b is other
			a.fold(row(qb), 1024, t0.Add(ttl+time.Second), 0) // a idle for more than the TTL
			got, fpOver, epOver := samples(a)
			if !maps.Equal(got, tc.want) {
				t.Errorf("samples by query_fp/endpoint: got %v; want %v", got, tc.want)
			}
			if fpOver != tc.fpOverflow || epOver != tc.fpOverflow {
				t.Errorf("overflow: got query_fp %v, endpoint %v; want %v each", fpOver, epOver, tc.fpOverflow)
			}
		})
	}
}
