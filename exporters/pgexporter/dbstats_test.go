package pgexporter

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bitville/bitville-apm/internal/stack"
)

func TestDBStatsCheckpointerQueryByVersion(t *testing.T) {
	for _, tc := range []struct {
		version  int
		want     []string
		wantNone []string
	}{
		{130012, []string{"FROM pg_stat_bgwriter", "checkpoints_req", "buffers_backend"}, []string{"pg_stat_checkpointer"}},
		{140010, []string{"FROM pg_stat_bgwriter", "checkpoints_timed", "buffers_checkpoint"}, []string{"pg_stat_checkpointer"}},
		{150007, []string{"FROM pg_stat_bgwriter", "checkpoint_write_time", "checkpoint_sync_time"}, []string{"pg_stat_checkpointer"}},
		{160003, []string{"FROM pg_stat_bgwriter", "maxwritten_clean", "buffers_alloc"}, []string{"pg_stat_checkpointer"}},
		{170000, []string{"pg_stat_checkpointer c", "c.num_timed", "c.num_requested", "c.write_time", "c.sync_time", "c.buffers_written", "b.buffers_clean", "b.buffers_alloc", "NULL::int8"},
			[]string{"checkpoints_req", "buffers_backend", "buffers_checkpoint"}},
		{180001, []string{"pg_stat_checkpointer"}, []string{"buffers_backend"}},
	} {
		q := dbsCheckpointerQuery(tc.version)
		for _, w := range tc.want {
			if !strings.Contains(q, w) {
				t.Errorf("version %d: the query lacks %q:\n%s", tc.version, w, q)
			}
		}
		for _, w := range tc.wantNone {
			if strings.Contains(q, w) {
				t.Errorf("version %d: the query has %q:\n%s", tc.version, w, q)
			}
		}
		// The same nine columns whatever the version.
		sel := q[len("SELECT "):strings.Index(q, "FROM")]
		if n := strings.Count(sel, ",") + 1; n != 9 {
			t.Errorf("version %d: %d columns; want 9", tc.version, n)
		}
	}
}

func TestDBStats(t *testing.T) {
	pg := startPG(t)
	dsn := pg.DSN("postgres")
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	_, reg := newTestExporter(t, nil, dsn)
	m0 := gather(t, reg)
	for _, c := range []string{"connections", "database", "checkpointer", "replication", "autovacuum"} {
		if got := m0["bitville_pg_scrape_collector_success{collector="+c+",server="+server+"}"]; got != 1 {
			t.Errorf("collector %s success: got %v; want 1\n%v", c, got, dump(m0, "bitville_pg_scrape"))
		}
	}

	// Activity: 50 rows inserted and committed, 5 more rolled back.
	exec(t, pg, "postgres", "CREATE TABLE dbstats_t (id int PRIMARY KEY); INSERT INTO dbstats_t SELECT generate_series(1, 50)")
	exec(t, pg, "postgres", "BEGIN; INSERT INTO dbstats_t SELECT generate_series(51, 55); ROLLBACK;")
	exec(t, pg, "postgres", "CHECKPOINT")

	// A second connection left idle.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	idle, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(context.Background())
	if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	// Statistics reach the shared counters when a backend goes idle or
	// exits (PostgreSQL 15): poll rather than assume a timing.
	db := func(name string) string { return name + "{datname=postgres,server=" + server + "}" }
	want := func(m map[string]float64) []string {
		var bad []string
		if m[db("bitville_pg_database_commits_total")] <= 0 {
			bad = append(bad, "commits > 0")
		}
		if m[db("bitville_pg_database_rollbacks_total")] < 1 {
			bad = append(bad, "rollbacks ≥ 1")
		}
		if m[db("bitville_pg_database_tuples_inserted_total")] < 50 {
			bad = append(bad, "tuples_inserted ≥ 50")
		}
		if m["bitville_pg_connections{datname=postgres,server="+server+",state=idle}"] < 1 {
			bad = append(bad, "connections{state=idle} ≥ 1")
		}
		if m["bitville_pg_checkpoints_total{kind=requested,server="+server+"}"] <= m0["bitville_pg_checkpoints_total{kind=requested,server="+server+"}"] {
			bad = append(bad, "checkpoints_total{kind=requested} grew")
		}
		return bad
	}
	var m map[string]float64
	var bad []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		m = gather(t, reg)
		if bad = want(m); len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(bad) > 0 {
		t.Errorf("not seen: %v\n%v%v%v", bad, dump(m, "bitville_pg_database_"), dump(m, "bitville_pg_connections"), dump(m, "bitville_pg_checkpoints"))
	}

	for name, want := range map[string]float64{
		"bitville_pg_in_recovery{server=" + server + "}": 0,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s: got %v (present %v); want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{
		"bitville_pg_max_connections{server=" + server + "}",
		"bitville_pg_superuser_reserved_connections{server=" + server + "}",
		"bitville_pg_autovacuum_max_workers{server=" + server + "}",
		db("bitville_pg_database_size_bytes"),
		"bitville_pg_checkpoint_buffers_written_total{server=" + server + "}",
		"bitville_pg_buffers_allocated_total{server=" + server + "}",
		"bitville_pg_buffers_backend_written_total{server=" + server + "}", // PostgreSQL 15
	} {
		if _, ok := m[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if m[db("bitville_pg_database_size_bytes")] < 1e6 {
		t.Errorf("database size: got %v; want a few MB", m[db("bitville_pg_database_size_bytes")])
	}
	for k := range m {
		if strings.Contains(k, "datname=template0") || strings.Contains(k, "datname=template1") {
			t.Errorf("a template database is exposed: %s", k)
		}
		if strings.HasPrefix(k, "bitville_pg_replication_lag_") || strings.HasPrefix(k, "bitville_pg_standby_replay_delay_seconds") {
			t.Errorf("a primary without standbys has %s", k)
		}
	}
	for _, c := range []string{"connections", "database", "checkpointer", "replication", "autovacuum"} {
		if got := m["bitville_pg_scrape_collector_success{collector="+c+",server="+server+"}"]; got != 1 {
			t.Errorf("collector %s success: got %v; want 1", c, got)
		}
	}
}

// TestDBStatsDatabaseSizeIsCached: pg_database_size runs once per sizeEvery; in
// between the cached value is emitted.
func TestDBStatsDatabaseSizeIsCached(t *testing.T) {
	pg := startPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	now := time.Unix(1_800_000_000, 0)
	d := &dbsDatabase{sizeEvery: 5 * time.Minute, now: func() time.Time { return now }}
	sizeOf := func() float64 {
		t.Helper()
		if err := d.update(ctx, conn, 150000); err != nil {
			t.Fatal(err)
		}
		ch := make(chan prometheus.Metric, 1000)
		d.collect("s", ch)
		close(ch)
		for metric := range ch {
			if !strings.Contains(metric.Desc().String(), "bitville_pg_database_size_bytes") {
				continue
			}
			if g := dbsGaugeOf(t, metric); g.label == "postgres" {
				return g.value
			}
		}
		t.Fatal("no size for postgres")
		return 0
	}
	first := sizeOf()
	exec(t, pg, "postgres", "CREATE TABLE dbstats_big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g")
	now = now.Add(time.Minute)
	if got := sizeOf(); got != first {
		t.Errorf("size within 5 minutes: got %v; want the cached %v", got, first)
	}
	now = now.Add(5 * time.Minute)
	if got := sizeOf(); got <= first {
		t.Errorf("size after 5 minutes: got %v; want more than %v (a 4 MB table was created)", got, first)
	}
}

type dbsGaugeSample struct {
	label string // datname
	value float64
}

func dbsGaugeOf(t *testing.T, m prometheus.Metric) dbsGaugeSample {
	t.Helper()
	pb := &dto.Metric{}
	if err := m.Write(pb); err != nil {
		t.Fatal(err)
	}
	var s dbsGaugeSample
	for _, l := range pb.GetLabel() {
		if l.GetName() == "datname" {
			s.label = l.GetValue()
		}
	}
	s.value = pb.GetGauge().GetValue()
	return s
}

// TestDBStatsErrorsAndPrivileges: a missing view is an error from update,
// not a panic, and a role without pg_monitor still gets every collector.
func TestDBStatsErrorsAndPrivileges(t *testing.T) {
	pg := startPG(t)
	exec(t, pg, "postgres", "CREATE ROLE dbstats_plain LOGIN")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// PostgreSQL 15 has no pg_stat_checkpointer: asking as if it were 17.
	c := &dbsCheckpointer{}
	err = c.update(ctx, conn, 170000)
	if err == nil || !strings.Contains(err.Error(), "pg_stat_checkpointer") {
		t.Errorf("checkpointer as 17 on 15: got %v; want an error naming pg_stat_checkpointer", err)
	}
	ch := make(chan prometheus.Metric, 100)
	c.collect("s", ch)
	if len(ch) != 0 {
		t.Errorf("a failed checkpointer update emitted %d series", len(ch))
	}

	dsn := "postgres://dbstats_plain@" + pg.Host + ":" + itoa(pg.Port) + "/postgres?sslmode=disable"
	// A session of another role, left idle: hidden from the plain role.
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	_, reg := newTestExporter(t, nil, dsn)
	m := gather(t, reg)
	server := pg.Host + ":" + itoa(pg.Port) + "/postgres"
	for _, name := range []string{"connections", "database", "checkpointer", "replication", "autovacuum"} {
		if got := m["bitville_pg_scrape_collector_success{collector="+name+",server="+server+"}"]; got != 1 {
			t.Errorf("%s as a plain role: success %v; want 1\n%v", name, got, dump(m, "bitville_pg_scrape_collector_success"))
		}
	}
	if got := m["bitville_pg_connections{datname=postgres,server="+server+",state=hidden}"]; got < 1 {
		t.Errorf("another role's session as seen by a plain role: got %v; want state=hidden ≥ 1\n%v", got, dump(m, "bitville_pg_connections"))
	}
	if got := m["bitville_pg_connections{datname=postgres,server="+server+",state=active}"]; got < 1 {
		t.Errorf("the exporter's own session: got %v; want state=active ≥ 1\n%v", got, dump(m, "bitville_pg_connections"))
	}
	if _, ok := m["bitville_pg_database_size_bytes{datname=postgres,server="+server+"}"]; !ok {
		t.Errorf("no database size for a role with CONNECT")
	}
}

// A primary and a real streaming standby: every collector works on both,
// the primary reports the standby's lag, and the standby its replay delay.
// Pausing replay on the standby makes the byte lag grow, deterministically.
func TestDBStatsReplication(t *testing.T) {
	primary := startPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	standby, err := stack.StartPostgres(ctx, stack.PostgresConfig{
		Dir: filepath.Join(t.TempDir(), "standby"), Preload: []string{"pg_stat_statements"}, StandbyOf: primary,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Stop() })
	if got := exec(t, standby, "postgres", "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("the standby is not in recovery: %q", got)
	}
	e, reg := newTestExporter(t, nil, primary.DSN("postgres"), standby.DSN("postgres"))
	ps := "127.0.0.1:" + itoa(primary.Port) + "/postgres"
	ss := "127.0.0.1:" + itoa(standby.Port) + "/postgres"
	lagBytes := "bitville_pg_replication_lag_bytes{application_name=walreceiver,client_addr=local,server=" + ps + "}"
	lagSec := "bitville_pg_replication_lag_seconds{application_name=walreceiver,client_addr=local,server=" + ps + "}"
	delay := "bitville_pg_standby_replay_delay_seconds{server=" + ss + "}"

	exec(t, primary, "postgres", "CREATE TABLE repl_t (id int); INSERT INTO repl_t VALUES (1)")
	m := waitFor(t, e, reg, "the standby caught up", func(m map[string]float64) bool {
		v, ok := m[lagBytes]
		_, hasDelay := m[delay]
		return ok && v == 0 && hasDelay
	})
	for _, s := range []string{ps, ss} {
		for k, v := range m {
			if strings.HasPrefix(k, "bitville_pg_scrape_collector_success{") && strings.HasSuffix(k, "server="+s+"}") && v != 1 {
				t.Errorf("%s = 0 on the %s\n%s", k, map[bool]string{true: "primary", false: "standby"}[s == ps], errText(e))
			}
		}
	}
	if m["bitville_pg_in_recovery{server="+ps+"}"] != 0 || m["bitville_pg_in_recovery{server="+ss+"}"] != 1 {
		t.Errorf("in_recovery: primary %v, standby %v; want 0, 1", m["bitville_pg_in_recovery{server="+ps+"}"], m["bitville_pg_in_recovery{server="+ss+"}"])
	}
	if v, ok := m[lagSec]; !ok || v < 0 || v > 30 {
		t.Errorf("%s: got %v (present %v); want a small lag", lagSec, v, ok)
	}
	if _, ok := m["bitville_pg_replication_lag_bytes{application_name=walreceiver,client_addr=local,server="+ss+"}"]; ok {
		t.Errorf("the standby reports a standby of its own")
	}

	// Replay paused: WAL still arrives, the byte lag grows, and the
	// standby's replay delay keeps growing.
	exec(t, standby, "postgres", "SELECT pg_wal_replay_pause()")
	t.Cleanup(func() { _, _ = standby.Exec(context.Background(), "postgres", "SELECT pg_wal_replay_resume()") })
	d0 := m[delay]
	exec(t, primary, "postgres", "INSERT INTO repl_t SELECT generate_series(1, 10000)")
	m = waitFor(t, e, reg, "a byte lag while replay is paused", func(m map[string]float64) bool { return m[lagBytes] > 100000 })
	time.Sleep(1100 * time.Millisecond)
	m = gather(t, reg)
	if m[delay] <= d0 {
		t.Errorf("replay delay while paused: %v, before %v; want it to grow", m[delay], d0)
	}
	exec(t, standby, "postgres", "SELECT pg_wal_replay_resume()")
	waitFor(t, e, reg, "the standby caught up again", func(m map[string]float64) bool { v, ok := m[lagBytes]; return ok && v == 0 })
}
