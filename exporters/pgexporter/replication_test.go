package pgexporter

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

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
