package pgexporter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

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
