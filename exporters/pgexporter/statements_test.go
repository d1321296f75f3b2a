package pgexporter

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bitville/bitville-apm/internal/sqlfp"
	"github.com/bitville/bitville-apm/internal/stack"
)

// startPG starts a throwaway cluster with pg_stat_statements loaded and
// created in database postgres.
func startPG(t *testing.T) *stack.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{
		Dir:      filepath.Join(t.TempDir(), "pg"),
		Preload:  []string{"pg_stat_statements"},
		Settings: map[string]string{"pg_stat_statements.track_planning": "on"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	exec(t, pg, "postgres", "CREATE EXTENSION pg_stat_statements")
	return pg
}

func exec(t *testing.T, pg *stack.Postgres, db, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := pg.Exec(ctx, db, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newTestExporter(t *testing.T, mutate func(*Config), dsns ...string) (*Exporter, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DSNs = dsns
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	return e, reg
}

// gather scrapes reg and returns each series' value by "name{l=v,...}"
// (labels in the exposition's order).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			out[mf.GetName()+"{"+strings.Join(l, ",")+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func TestStatements(t *testing.T) {
	pg := startPG(t)
	exec(t, pg, "postgres", "CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders SELECT g, g * 10 FROM generate_series(1, 100) g")
	_, reg := newTestExporter(t, nil, pg.DSN("postgres"))
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"

	// A first scrape: what pg_stat_statements holds so far counts once.
	m := gather(t, reg)
	if m["bitville_pg_up{server="+server+"}"] != 1 {
		t.Fatalf("bitville_pg_up: got %v; want 1\n%v", m["bitville_pg_up{server="+server+"}"], m)
	}

	// The PHP side writes the statement with PDO's ? and a sqlcommenter
	// tag; PostgreSQL records it with $1 and without the literals.
	php := "SELECT total FROM orders WHERE id = ? /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/"
	fp := sqlfp.Fingerprint(php).Fingerprint
	exec(t, pg, "postgres", strings.Repeat("SELECT total FROM orders WHERE id = 7 /*endpoint='GET%20%2Forders%2F%7Bid%7D'*/;\n", 3)+
		"SELECT total FROM orders WHERE id = 8;\n")
	key := func(name string) string { return name + "{datname=postgres,query_fp=" + fp + ",server=" + server + "}" }
	m = gather(t, reg)
	if got := m[key("bitville_pg_statement_calls_total")]; got != 4 {
		t.Fatalf("calls of %s: got %v; want 4 (3 + 1 with another literal)\n%v", fp, got, dump(m, "bitville_pg_statement_calls_total"))
	}
	if got := m[key("bitville_pg_statement_rows_total")]; got != 4 {
		t.Errorf("rows: got %v; want 4", got)
	}
	if got := m[key("bitville_pg_statement_seconds_total")]; got <= 0 || got > 10 {
		t.Errorf("seconds: got %v; want a small positive number", got)
	}
	if got := m[key("bitville_pg_statement_shared_blocks_hit_total")] + m[key("bitville_pg_statement_shared_blocks_read_total")]; got < 4 {
		t.Errorf("shared blocks hit+read: got %v; want at least one per call", got)
	}
	info := "bitville_sql_query_info{query=SELECT total FROM orders WHERE id = $1,query_fp=" + fp + "}"
	if m[info] != 1 {
		t.Errorf("no %s\n%v", info, dump(m, "bitville_sql_query_info"))
	}

	// Counters only grow: more calls add, a reset of pg_stat_statements
	// does not take them back.
	exec(t, pg, "postgres", "SELECT total FROM orders WHERE id = 9; SELECT total FROM orders WHERE id = 10;")
	if got := gather(t, reg)[key("bitville_pg_statement_calls_total")]; got != 6 {
		t.Errorf("after two more calls: got %v; want 6", got)
	}
	exec(t, pg, "postgres", "SELECT pg_stat_statements_reset()")
	exec(t, pg, "postgres", "SELECT total FROM orders WHERE id = 11;")
	if got := gather(t, reg)[key("bitville_pg_statement_calls_total")]; got != 7 {
		t.Errorf("after a reset and one more call: got %v; want 7 (monotonic)", got)
	}
	if got := m["bitville_pg_scrape_collector_success{collector=statements,server="+server+"}"]; got != 1 {
		t.Errorf("collector success: got %v; want 1", got)
	}
}

func TestStatementsLimitAndOther(t *testing.T) {
	pg := startPG(t)
	_, reg := newTestExporter(t, func(c *Config) { c.TopQueries = 2 }, pg.DSN("postgres"))
	gather(t, reg)
	// Five shapes, the slowest first by far.
	exec(t, pg, "postgres", "SELECT pg_sleep(0.2); SELECT 1 AS a; SELECT 1 AS b; SELECT 1 AS c; SELECT 1 AS d;")
	m := gather(t, reg)
	own, other := 0, 0.0
	for k, v := range m {
		if !strings.HasPrefix(k, "bitville_pg_statement_calls_total{") {
			continue
		}
		if strings.Contains(k, "query_fp=other") {
			other += v
		} else {
			own++
		}
	}
	if own != 2 {
		t.Errorf("got %d fingerprints with a label of their own; want 2 (limits.queries)\n%v", own, dump(m, "bitville_pg_statement_calls_total"))
	}
	if other < 3 {
		t.Errorf("other: got %v calls; want the rest (≥ 3)", other)
	}
	sleepFP := sqlfp.Fingerprint("SELECT pg_sleep(0.2)").Fingerprint
	found := false
	for k := range m {
		if strings.HasPrefix(k, "bitville_pg_statement_seconds_total{") && strings.Contains(k, sleepFP) {
			found = true
		}
	}
	if !found {
		t.Errorf("the slowest statement (pg_sleep) has no label of its own\n%v", dump(m, "bitville_pg_statement_seconds_total"))
	}
}

func TestServerProblemsDoNotFailTheScrape(t *testing.T) {
	pg := startPG(t)
	exec(t, pg, "postgres", "CREATE DATABASE plain") // no pg_stat_statements in it
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	down := "postgres://postgres@127.0.0.1:" + itoa(port) + "/postgres?sslmode=disable"
	e, reg := newTestExporter(t, func(c *Config) { c.StatementTimeout = 500 * time.Millisecond; c.ScrapeTimeout = 2 * time.Second },
		pg.DSN("postgres"), pg.DSN("plain"), down)
	_ = e
	start := time.Now()
	m := gather(t, reg)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("scrape took %s; want it within the scrape timeout", took)
	}
	ok := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	plain := "127.0.0.1:" + itoa(pg.Port) + "/plain"
	gone := down[len("postgres://postgres@"):strings.Index(down, "?")]
	for server, want := range map[string]float64{ok: 1, plain: 1, gone: 0} {
		if got := m["bitville_pg_up{server="+server+"}"]; got != want {
			t.Errorf("bitville_pg_up{server=%s}: got %v; want %v", server, got, want)
		}
	}
	for server, want := range map[string]float64{ok: 1, plain: 0, gone: 0} {
		if got := m["bitville_pg_scrape_collector_success{collector=statements,server="+server+"}"]; got != want {
			t.Errorf("statements success on %s: got %v; want %v", server, got, want)
		}
	}
	if got := m["bitville_pg_scrape_errors_total{collector=statements,server="+plain+"}"]; got != 1 {
		t.Errorf("errors on %s: got %v; want 1", plain, got)
	}
}

func TestConfigErrors(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pg.dsn") {
		t.Errorf("no DSN: got %v", err)
	}
	cfg.DSNs = []string{"postgres://u:secret@host:5432/db?sslmode=bogus"}
	_, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatal("a bad DSN was accepted")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	cfg.DSNs = []string{"postgres://h/db", "postgres://h:5432/db"}
	if _, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("the same server twice: got %v", err)
	}
	cfg.LabelTTL = time.Second
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "limits.session-labels-ttl") {
		t.Errorf("a label TTL of 1s: got %v; want an error naming limits.session-labels-ttl", err)
	}
	cfg.LabelTTL = 0
	if err := cfg.Validate(); err != nil {
		t.Errorf("a label TTL of 0 (never): got %v", err)
	}
}

func dump(m map[string]float64, prefix string) string {
	var b strings.Builder
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			b.WriteString(k)
			b.WriteString(" ")
			b.WriteString(strings.TrimRight(strings.TrimRight(ftoa(v), "0"), "."))
			b.WriteString("\n")
		}
	}
	return b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 6, 64) }
