package pgexporter

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bitville/bitville-apm/internal/sqlfp"
)

func TestLocks(t *testing.T) {
	pg := startPG(t)
	exec(t, pg, "postgres", "CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100), (2, 200)")
	e, reg := newTestExporter(t, nil, pg.DSN("postgres"))
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	key := func(name, labels string) string { return name + "{" + labels + "server=" + server + "}" }
	blocked := key("bitville_pg_blocked_sessions", "datname=postgres,")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	b, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	var aPID, bPID int32
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&aPID); err != nil {
		t.Fatal(err)
	}
	if err := b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&bPID); err != nil {
		t.Fatal(err)
	}

	m := gather(t, reg)
	if got, ok := m[blocked]; ok {
		t.Errorf("nothing blocked yet: got %s %v; want no series", blocked, got)
	}
	if got := m[key("bitville_pg_scrape_collector_success", "collector=locks,")]; got != 1 {
		t.Fatalf("locks collector success: got %v; want 1\n%v", got, dump(m, "bitville_pg_scrape"))
	}

	// A holds the row and stays idle in transaction; B waits for it.
	update := "UPDATE accounts SET balance = balance - 10 WHERE id = 1"
	if _, err := a.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, update); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "UPDATE accounts SET balance = balance + 5 WHERE id = 1")
		done <- err
	}()
	rolledBack := false
	defer func() {
		if !rolledBack {
			_, _ = a.Exec(context.Background(), "ROLLBACK")
			<-done
		}
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		m = gather(t, reg)
		if m[blocked] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never showed as blocked\n%v\n%v", dump(m, "bitville_pg_blocked"), dump(m, "bitville_pg_scrape"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := m["bitville_pg_lock_root_blockers{datname=postgres,server="+server+",state=idle in transaction}"]; got != 1 {
		t.Errorf("root blockers idle in transaction: got %v; want 1\n%v", got, dump(m, "bitville_pg_lock_root"))
	}
	if got := m[key("bitville_pg_lock_wait_seconds_max", "datname=postgres,")]; got <= 0 {
		t.Errorf("lock wait max: got %v; want > 0", got)
	}
	if got := m[key("bitville_pg_lock_root_blocker_age_seconds_max", "datname=postgres,")]; got <= 0 {
		t.Errorf("root blocker age: got %v; want > 0", got)
	}
	fp := sqlfp.Fingerprint(update).Fingerprint
	if got := m[key("bitville_pg_lock_blocked_by_root", "datname=postgres,query_fp="+fp+",")]; got != 1 {
		t.Errorf("blocked under %s: got %v; want 1\n%v", fp, got, dump(m, "bitville_pg_lock_blocked_by_root"))
	}

	trees := e.LockTrees()
	if len(trees) != 1 {
		t.Fatalf("got %d lock trees; want 1: %+v", len(trees), trees)
	}
	tr := trees[0]
	if tr.RootPID != aPID || tr.RootState != "idle in transaction" || tr.QueryFP != fp || tr.Server != server {
		t.Errorf("tree root: got pid %d state %q fp %s server %s; want %d, idle in transaction, %s, %s", tr.RootPID, tr.RootState, tr.QueryFP, tr.Server, aPID, fp, server)
	}
	if tr.Query != sqlfp.Fingerprint(update).Normalized {
		t.Errorf("tree query: got %q", tr.Query)
	}
	if len(tr.Blocked) != 1 || tr.Blocked[0].PID != bPID || tr.Blocked[0].WaitSeconds <= 0 {
		t.Errorf("tree blocked sessions: got %+v; want B (pid %d) waiting", tr.Blocked, bPID)
	}
	// The same trees over HTTP, for tools that read the exporter.
	rec := httptest.NewRecorder()
	e.Handler(reg, "test").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/locks", nil))
	var served []struct {
		Server  string `json:"server"`
		RootPID int32  `json:"root_pid"`
		QueryFP string `json:"query_fp"`
		Query   string `json:"query"`
		Blocked []struct {
			PID         int32   `json:"pid"`
			WaitSeconds float64 `json:"wait_seconds"`
		} `json:"blocked"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &served); err != nil || rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/api/v1/locks: status %d, %v: %s", rec.Code, err, rec.Body)
	}
	if len(served) != 1 || served[0].Server != server || served[0].RootPID != aPID || served[0].QueryFP != fp || served[0].Query != tr.Query ||
		len(served[0].Blocked) != 1 || served[0].Blocked[0].PID != bPID || served[0].Blocked[0].WaitSeconds <= 0 {
		t.Errorf("/api/v1/locks: got %s", rec.Body)
	}

	// A rolls back: B goes on, nothing is blocked, the series stays at 0.
	if _, err := a.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	rolledBack = true
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("B's update: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("B still waits after A rolled back")
	}
	m = gather(t, reg)
	if got, ok := m[blocked]; !ok || got != 0 {
		t.Errorf("after the rollback: got %s %v (present %v); want 0", blocked, got, ok)
	}
	if got, ok := m["bitville_pg_lock_root_blockers{datname=postgres,server="+server+",state=idle in transaction}"]; ok {
		t.Errorf("after the rollback: root blockers still %v", got)
	}
	if n := len(e.LockTrees()); n != 1 {
		t.Errorf("the ring lost or duplicated the tree: %d trees", n)
	}
}

func TestLocksBuildChainsAndLimits(t *testing.T) {
	l := newLocks(1, 0)
	now := time.Now()
	// 10 (idle in transaction) blocks 11 (waiting), which blocks 12; 20
	// (active) blocks 21; 30 and 31 wait on each other (a deadlock).
	rows := []lockRow{
		{pid: 10, datname: "db", state: "idle in transaction", xactAge: 30, query: "UPDATE t SET a = 1 WHERE id = 1"},
		{pid: 11, datname: "db", state: "active", waitSec: 5, query: "UPDATE t SET a = 2 WHERE id = 1", waiting: true, blockers: []int32{10}},
		{pid: 12, datname: "db", state: "active", waitSec: 3, query: "LOCK t", waiting: true, blockers: []int32{11}},
		{pid: 20, datname: "db", state: "active", xactAge: 7, query: "ALTER TABLE u ADD b int"},
		{pid: 21, datname: "db", state: "active", waitSec: 1, query: "SELECT * FROM u", waiting: true, blockers: []int32{20}},
		{pid: 30, datname: "db", state: "active", waitSec: 2, query: "SELECT 1", waiting: true, blockers: []int32{31}},
		{pid: 31, datname: "db", state: "active", waitSec: 2, query: "SELECT 2", waiting: true, blockers: []int32{30}},
	}
	l.build(rows, now)
	if got := l.blocked["db"]; got != 5 {
		t.Errorf("blocked: got %v; want 5", got)
	}
	if got := l.waitMax["db"]; got != 5 {
		t.Errorf("wait max: got %v; want 5", got)
	}
	if got := l.roots[lockDBState{"db", "idle in transaction"}]; got != 1 {
		t.Errorf("idle in transaction roots: got %v; want 1", got)
	}
	if got := l.roots[lockDBState{"db", "active"}]; got != 1 {
		t.Errorf("active roots: got %v; want 1", got)
	}
	if got := l.rootAgeMax["db"]; got != 30 {
		t.Errorf("root age max: got %v; want 30", got)
	}
	fp10 := sqlfp.Fingerprint(rows[0].query).Fingerprint
	if got := l.blockedByFP[lockDBFP{"db", fp10}]; got != 2 {
		t.Errorf("blocked under pid 10's query: got %v; want 2 (11 directly, 12 transitively)", got)
	}
	if got := l.blockedByFP[lockDBFP{"db", "other"}]; got != 1 {
		t.Errorf("blocked under other (label limit 1): got %v; want 1", got)
	}
	trees := l.lockTrees()
	if len(trees) != 2 || trees[0].RootPID != 10 || len(trees[0].Blocked) != 2 || trees[1].RootPID != 20 {
		t.Errorf("trees: got %+v", trees)
	}
	// The same roots again update their trees; the ring keeps at most 50.
	l.build(rows, now.Add(time.Second))
	if trees := l.lockTrees(); len(trees) != 2 || !trees[0].FirstSeen.Equal(now) || !trees[0].LastSeen.Equal(now.Add(time.Second)) {
		t.Errorf("trees after a second scrape: got %+v", trees)
	}
	for i := 0; i < 60; i++ {
		l.build([]lockRow{
			{pid: int32(100 + i), datname: "db", state: "idle in transaction", query: "SELECT 1"},
			{pid: int32(1000 + i), datname: "db", state: "active", waiting: true, blockers: []int32{int32(100 + i)}},
		}, now)
	}
	if trees := l.lockTrees(); len(trees) != lockTreesKept || trees[len(trees)-1].RootPID != 159 {
		t.Errorf("ring: got %d trees, the last root %d; want %d, 159", len(trees), trees[len(trees)-1].RootPID, lockTreesKept)
	}
}

// TestLocksScrapeWithinDeadline: a session holds an ACCESS EXCLUSIVE lock
// on pg_database, which pg_stat_activity and pg_stat_statements' query
// join: the scrape still answers, the blocked collectors fail, and the
// server stays up.
func TestLocksScrapeWithinDeadline(t *testing.T) {
	pg := startPG(t)
	_, reg := newTestExporter(t, func(c *Config) { c.StatementTimeout = 300 * time.Millisecond; c.ScrapeTimeout = 2 * time.Second }, pg.DSN("postgres"))
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"
	// Connect first: a new connection reads pg_database and would wait too.
	if m := gather(t, reg); m["bitville_pg_up{server="+server+"}"] != 1 {
		t.Fatalf("not up before the lock\n%v", dump(m, "bitville_pg_"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	holder, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(ctx, "BEGIN; LOCK TABLE pg_database IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = holder.Exec(context.Background(), "ROLLBACK") }()

	got := make(chan map[string]float64, 1)
	go func() {
		mfs, err := reg.Gather()
		if err != nil {
			t.Errorf("gather: %v", err)
		}
		m := map[string]float64{}
		for _, mf := range mfs {
			for _, x := range mf.GetMetric() {
				k := mf.GetName() + "{"
				for i, lp := range x.GetLabel() {
					if i > 0 {
						k += ","
					}
					k += lp.GetName() + "=" + lp.GetValue()
				}
				m[k+"}"] = value(x)
			}
		}
		got <- m
	}()
	var m map[string]float64
	select {
	case m = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the scrape did not return within 10s while pg_database was locked")
	}
	if v := m["bitville_pg_up{server="+server+"}"]; v != 1 {
		// lock_timeout is below statement_timeout and a server-side
		// timeout keeps the connection: no reconnection waits on the lock.
		t.Errorf("bitville_pg_up: got %v; want 1 (the connection is fine)\n%v", v, dump(m, "bitville_pg_scrape_collector_success"))
	}
	for _, c := range []string{"statements", "locks"} {
		if v, ok := m["bitville_pg_scrape_collector_success{collector="+c+",server="+server+"}"]; !ok || v != 0 {
			t.Errorf("%s collector success: got %v (present %v); want 0\n%v", c, v, ok, dump(m, "bitville_pg_scrape"))
		}
	}
	if v, ok := m["bitville_pg_blocked_sessions{datname=postgres,server="+server+"}"]; ok {
		t.Errorf("blocked sessions emitted after a failed update: %v", v)
	}
}

// TestLocksLabelsExpire: a root blocker's query_fp unseen for the label
// TTL gives its label back to the next fingerprint.
func TestLocksLabelsExpire(t *testing.T) {
	const ttl = 10 * time.Minute
	tree := func(query string) []lockRow {
		return []lockRow{
			{pid: 10, datname: "db", state: "idle in transaction", query: query},
			{pid: 11, datname: "db", state: "active", waiting: true, blockers: []int32{10}},
		}
	}
	fpA, fpB := sqlfp.Fingerprint("UPDATE a SET x = 1").Fingerprint, sqlfp.Fingerprint("UPDATE b SET x = 1").Fingerprint
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		wantFP string // of b's tree after a was idle for longer than ttl
	}{
		{"ttl", ttl, fpB},
		{"never", 0, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocks(1, tc.ttl)
			l.build(tree("UPDATE a SET x = 1"), t0)
			if got := l.blockedByFP[lockDBFP{"db", fpA}]; got != 1 {
				t.Errorf("the first fingerprint: got %v; want 1 blocked under its own label", got)
			}
			l.build(tree("UPDATE b SET x = 1"), t0.Add(time.Minute))
			if got := l.blockedByFP[lockDBFP{"db", "other"}]; got != 1 {
				t.Errorf("a second fingerprint past the limit: got %v; want 1 blocked under other", got)
			}
			l.build(tree("UPDATE b SET x = 1"), t0.Add(ttl+time.Second))
			if got := l.blockedByFP[lockDBFP{"db", tc.wantFP}]; got != 1 {
				t.Errorf("after the first was idle for more than %s: got %v; want 1 blocked under %s (%v)", ttl, got, tc.wantFP, l.blockedByFP)
			}
		})
	}
}
