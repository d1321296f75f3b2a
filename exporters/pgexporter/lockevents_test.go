package pgexporter

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// recorder is an Emitter that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []rawtrace.Event
}

func (r *recorder) Admit(string, rawtrace.Priority) bool { return true }

// refusing is a recorder whose rate limit is spent.
type refusing struct{ recorder }

func (*refusing) Admit(string, rawtrace.Priority) bool { return false }

func (r *recorder) Emit(e rawtrace.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// of returns the events of kind so far.
func (r *recorder) of(kind string) []rawtrace.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []rawtrace.Event
	for _, e := range r.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// waitEvents waits up to 30s for n events of kind.
func (r *recorder) waitEvents(t *testing.T, e *Exporter, kind string, n int) []rawtrace.Event {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got := r.of(kind); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %d %s events; got %d\n%s", n, kind, len(r.of(kind)), errText(e))
		}
	}
}

func TestLockRoots(t *testing.T) {
	waiter := func(pid int32, blockers ...int32) lockRow {
		return lockRow{pid: pid, waiting: true, blockers: blockers}
	}
	holder := func(pid int32) lockRow { return lockRow{pid: pid, state: "idle in transaction"} }
	for _, tc := range []struct {
		name string
		rows []lockRow
		want map[int32][]int32 // root → waiters
	}{
		{"chain", []lockRow{holder(1), waiter(2, 1), waiter(3, 2), waiter(4, 3)}, map[int32][]int32{1: {2, 3, 4}}},
		{"several roots", []lockRow{holder(1), holder(5), waiter(2, 1), waiter(6, 5), waiter(7, 5)}, map[int32][]int32{1: {2}, 5: {6, 7}}},
		{"waiter under two roots", []lockRow{holder(1), holder(5), waiter(2, 1, 5)}, map[int32][]int32{1: {2}, 5: {2}}},
		{"two paths to one root", []lockRow{holder(1), waiter(2, 1), waiter(3, 1), waiter(4, 2, 3)}, map[int32][]int32{1: {2, 3, 4}}},
		{"cycle", []lockRow{waiter(1, 2), waiter(2, 3), waiter(3, 1)}, map[int32][]int32{}},
		{"cycle with a way out", []lockRow{holder(9), waiter(1, 2), waiter(2, 1, 9)}, map[int32][]int32{9: {1, 2}}},
		{"waiting on itself", []lockRow{waiter(1, 1)}, map[int32][]int32{}},
		{"blocker gone, prepared transaction", []lockRow{waiter(2, 40), waiter(3, 0)}, map[int32][]int32{0: {3}, 40: {2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			byPID := map[int32]*lockRow{}
			for i := range tc.rows {
				byPID[tc.rows[i].pid] = &tc.rows[i]
			}
			under, roots := lockRoots(tc.rows, byPID)
			got := map[int32][]int32{}
			for p, ws := range under {
				for _, w := range ws {
					got[p] = append(got[p], w.pid)
				}
				slices.Sort(got[p])
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("roots: got %v; want %v", got, tc.want)
			}
			if !slices.IsSorted(roots) || len(roots) != len(tc.want) {
				t.Errorf("root pids: got %v; want the %d roots in order", roots, len(tc.want))
			}
		})
	}
}

// lockLineOf decodes a pg_locks line.
func lockLineOf(t *testing.T, e rawtrace.Event) lockLine {
	t.Helper()
	var l lockLine
	if err := json.Unmarshal(e.Line, &l); err != nil {
		t.Fatalf("pg_locks line: %v: %s", err, e.Line)
	}
	return l
}

func TestLockEventsReport(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LockWaitThreshold, cfg.LockRepeat = time.Second, time.Minute
	t0 := time.Unix(1_800_000_000, 0)
	xact := t0.Add(-time.Hour)
	rootQuery := "UPDATE accounts SET note = 'secret-root' WHERE id = 7 /*endpoint='POST%20%2Fcheckout',correlation_id='c-1'*/"
	trees := func(since time.Time, wait float64) []lockRow {
		return []lockRow{
			{pid: 10, datname: "shop", state: "idle in transaction", appName: "php-fpm", since: &since, xactAge: 30, query: rootQuery, waitType: "Client", waitEvent: "ClientRead"},
			{pid: 11, datname: "shop", state: "active", waitSec: wait, query: "UPDATE accounts SET note = 'secret-11' WHERE id = 7", waitType: "Lock", waiting: true, blockers: []int32{10}, locktype: "transactionid", mode: "ShareLock"},
			{pid: 12, datname: "shop", state: "active", waitSec: 0.5, query: "UPDATE accounts SET note = 'secret-12' WHERE id = 7", waitType: "Lock", waiting: true, blockers: []int32{11}, locktype: "tuple", mode: "ExclusiveLock", relation: "accounts"},
			// 20's waiter is below the threshold; 30 and 31 wait on each other.
			{pid: 20, datname: "shop", state: "active", query: "LOCK t"},
			{pid: 21, datname: "shop", state: "active", waitSec: 0.9, waiting: true, blockers: []int32{20}},
			{pid: 30, datname: "shop", state: "active", waitSec: 9, waiting: true, blockers: []int32{31}},
			{pid: 31, datname: "shop", state: "active", waitSec: 9, waiting: true, blockers: []int32{30}},
		}
	}
	ev := newLockEvents(cfg, "db1")
	// Over the rate limit: nothing is built, and the tree is tried again
	// at the next sample, not a lock-repeat later.
	spent := &refusing{}
	ev.report(spent, "pg:5432/shop", trees(xact, 5), 1024, t0)
	if len(spent.events) != 0 || len(ev.episodes) != 0 {
		t.Fatalf("a refused tree: %d events emitted, %d episodes recorded; want none", len(spent.events), len(ev.episodes))
	}
	rec := &recorder{}
	ev.report(rec, "pg:5432/shop", trees(xact, 5), 1024, t0)
	got := rec.of("pg_locks")
	if len(got) != 1 {
		t.Fatalf("got %d events; want 1 (root 10 only): %v", len(got), got)
	}
	e := got[0]
	fp := sqlfp.Fingerprint(rootQuery)
	if e.Level != rawtrace.LevelWarning || e.Priority != rawtrace.PriorityError || e.Project != "postgres" || !e.Time.Equal(t0) ||
		e.IDs != (rawtrace.IDs{QueryFP: fp.Fingerprint, CorrelationID: "c-1"}) {
		t.Errorf("event: got level %s, priority %s, project %s, time %s, ids %+v", e.Level, e.Priority, e.Project, e.Time, e.IDs)
	}
	if want := "lock tree on shop: pid 10 (POST /checkout) blocks 2 sessions for 5.0s"; e.Summary != want {
		t.Errorf("summary: got %q; want %q", e.Summary, want)
	}
	if strings.Contains(string(e.Line), "secret") {
		t.Errorf("a literal in the line: %s", e.Line)
	}
	l := lockLineOf(t, e)
	wantRoot := lockRootLine{PID: 10, State: "idle in transaction", ApplicationName: "php-fpm", Endpoint: "POST /checkout", CorrelationID: "c-1",
		Query: fp.Normalized, QueryFP: fp.Fingerprint, XactSeconds: 30, WaitEventType: "Client", WaitEvent: "ClientRead"}
	if l.Kind != "pg_locks" || l.Server != "pg:5432/shop" || l.Datname != "shop" || l.Host != "db1" || l.WaitSeconds != 5 || l.Blocked != 2 || l.Root != wantRoot {
		t.Errorf("line: got %+v", l)
	}
	if len(l.Waiters) != 2 || l.Waiters[0].PID != 11 || l.Waiters[1].PID != 12 ||
		!slices.Equal(l.Waiters[1].BlockedBy, []int32{11}) || l.Waiters[1].Relation != "accounts" || l.Waiters[1].Locktype != "tuple" || l.Waiters[0].Mode != "ShareLock" {
		t.Errorf("waiters: got %+v; want 11 then 12, longest wait first, with their locks", l.Waiters)
	}

	// The same episode: again only after lock-repeat.
	ev.report(rec, "pg:5432/shop", trees(xact, 35), 1024, t0.Add(30*time.Second))
	if n := len(rec.of("pg_locks")); n != 1 {
		t.Errorf("within lock-repeat: %d events; want still 1", n)
	}
	ev.report(rec, "pg:5432/shop", trees(xact, 65), 1024, t0.Add(time.Minute))
	got = rec.of("pg_locks")
	if len(got) != 2 || got[1].Level != rawtrace.LevelError {
		t.Fatalf("after lock-repeat with a wait of 65s: %d events, the last %+v; want 2, an error (≥ 10× the threshold)", len(got), got[len(got)-1])
	}
	// The same pid in another transaction is a new episode, reported at
	// once; the old one is forgotten.
	ev.report(rec, "pg:5432/shop", trees(xact.Add(time.Hour), 2), 1024, t0.Add(61*time.Second))
	if n := len(rec.of("pg_locks")); n != 3 {
		t.Errorf("a new transaction of the same root: %d events; want 3", n)
	}
	if len(ev.episodes) != 1 {
		t.Errorf("episodes kept: %v; want the current one only", ev.episodes)
	}
	// Trees gone: nothing is kept.
	ev.report(rec, "pg:5432/shop", nil, 1024, t0.Add(62*time.Second))
	if len(ev.episodes) != 0 {
		t.Errorf("episodes after the trees ended: %v; want none", ev.episodes)
	}
}

func TestLockEventsRootsWithoutRows(t *testing.T) {
	cfg := DefaultConfig()
	rows := []lockRow{
		{pid: 2, datname: "shop", waitSec: 3, waiting: true, blockers: []int32{0}},
		{pid: 3, datname: "shop", waitSec: 3, waiting: true, blockers: []int32{40}},
	}
	rec := &recorder{}
	newLockEvents(cfg, "").report(rec, "s", rows, 1024, time.Now())
	got := rec.of("pg_locks")
	if len(got) != 2 {
		t.Fatalf("got %d events; want 2", len(got))
	}
	for i, want := range []lockRootLine{{PID: 0, State: "prepared transaction"}, {PID: 40, State: "unknown"}} {
		if l := lockLineOf(t, got[i]); l.Root != want || l.Datname != "shop" || got[i].IDs != (rawtrace.IDs{}) {
			t.Errorf("event %d: got root %+v, datname %q, ids %+v; want %+v, shop, none", i, l.Root, l.Datname, got[i].IDs, want)
		}
	}
}

func TestLockEventsWaitersBounded(t *testing.T) {
	rows := []lockRow{{pid: 1, state: "idle in transaction"}}
	for i := range lockWaitersMax + 50 {
		rows = append(rows, lockRow{pid: int32(100 + i), waitSec: float64(i), waiting: true, blockers: []int32{1}})
	}
	rec := &recorder{}
	newLockEvents(DefaultConfig(), "").report(rec, "s", rows, 1024, time.Now())
	l := lockLineOf(t, rec.of("pg_locks")[0])
	if l.Blocked != lockWaitersMax+50 || len(l.Waiters) != lockWaitersMax || l.Waiters[0].PID != int32(100+lockWaitersMax+49) {
		t.Errorf("got blocked %d, %d waiters, the first %d; want %d, %d, the longest wait first", l.Blocked, len(l.Waiters), l.Waiters[0].PID, lockWaitersMax+50, lockWaitersMax)
	}
}

// observe reads the trees only when a sampled session has waited past the
// threshold, and forgets every episode once nothing waits on a lock.
func TestLockEventsObserveReadsOnlyPastThreshold(t *testing.T) {
	ev := newLockEvents(DefaultConfig(), "") // threshold 1s
	ev.episodes[lockEpisode{pid: 1}] = time.Now()
	short := []actRow{{waitType: "Lock", stateAge: 0.5, hasState: true}, {waitType: "IO", stateAge: 9, hasState: true}}
	// A nil server: any read would panic.
	ev.observe(context.Background(), rawtrace.Discard, nil, short, 1024, nil, time.Now())
	if len(ev.episodes) != 1 {
		t.Errorf("a wait below the threshold: episodes %v; want kept", ev.episodes)
	}
	ev.observe(context.Background(), rawtrace.Discard, nil, short[1:], 1024, nil, time.Now())
	if len(ev.episodes) != 0 {
		t.Errorf("nothing waiting on a lock: episodes %v; want none", ev.episodes)
	}
}

func TestEventsFlagsValidated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		flag   string
	}{
		{"empty project", func(c *Config) { c.EventsProject = " " }, "events.project"},
		{"zero threshold", func(c *Config) { c.LockWaitThreshold = 0 }, "events.lock-wait-threshold"},
		{"repeat below the sampling", func(c *Config) { c.LockRepeat = 10 * time.Millisecond }, "events.lock-repeat"},
		{"negative sessions", func(c *Config) { c.ActiveSessionsThreshold = -1 }, "events.active-sessions-threshold"},
		{"snapshots below the sampling", func(c *Config) { c.ActivityEvery = 10 * time.Millisecond }, "events.activity-every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DSNs = []string{"postgres://h/db"}
			tc.mutate(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("got %v; want an error naming %s", err, tc.flag)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.DSNs = []string{"postgres://h/db"}
	cfg.ActiveSessionsThreshold = 0 // off
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults with snapshots off: %v", err)
	}
}

// The command embeds both Config and rawtrace.Config: no flag may be
// declared twice.
func TestEventsFlagsDoNotClash(t *testing.T) {
	names := func(v any) map[string]bool {
		out := map[string]bool{}
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			if n := rt.Field(i).Tag.Get("name"); n != "" {
				out[n] = true
			}
		}
		return out
	}
	ours := names(Config{})
	for n := range names(rawtrace.Config{}) {
		if ours[n] {
			t.Errorf("--%s is declared by both pgexporter.Config and rawtrace.Config", n)
		}
	}
}

// TestLockEvents: a session holds a row lock in an open transaction, two
// wait on it (one directly, one behind the first on the tuple lock): one
// pg_locks event for the episode, none again within lock-repeat, a new
// one for the next transaction that blocks.
func TestLockEvents(t *testing.T) {
	pg := startPG(t)
	exec(t, pg, "postgres", "CREATE TABLE accounts (id int PRIMARY KEY, balance int, note text); INSERT INTO accounts VALUES (7, 100, '')")
	dsn := pg.DSN("postgres")
	e, reg := newTestExporter(t, func(c *Config) {
		c.ActivityInterval = 100 * time.Millisecond
		c.LockWaitThreshold = 200 * time.Millisecond
	}, dsn)
	rec := &recorder{}
	e.ShipTo(rec)
	server := "127.0.0.1:" + itoa(pg.Port) + "/postgres"

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := func(dsn string) (*pgx.Conn, int32) {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		var pid int32
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return c, pid
	}
	a, aPID := connect(dsn + "&application_name=shop-web")
	rootQuery := "UPDATE accounts SET balance = balance - 4242, note = 'secret-root' WHERE id = 7 /*endpoint='POST%20%2Fcheckout',correlation_id='corr-123'*/"
	waiterQuery := "UPDATE accounts SET note = 'secret-waiter' WHERE id = 7 /*endpoint='POST%20%2Fpay'*/"
	hold := func() {
		t.Helper()
		if _, err := a.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Exec(ctx, rootQuery); err != nil {
			t.Fatal(err)
		}
	}
	// wait runs a waiter's update on c; the returned channel gives its
	// result once A's transaction ends.
	wait := func(c *pgx.Conn) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, waiterQuery)
			done <- err
		}()
		return done
	}
	release := func(dones ...chan error) {
		t.Helper()
		if _, err := a.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		for _, d := range dones {
			if err := <-d; err != nil {
				t.Fatalf("a waiter's update: %v", err)
			}
		}
	}

	waiting := func(n string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); exec(t, pg, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") != n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s sessions do not wait on a lock", n)
			}
		}
	}

	hold()
	b, _ := connect(dsn)
	c, _ := connect(dsn)
	bDone := wait(b)
	waiting("1")
	// C waits behind B: B holds the tuple lock while it waits for A.
	cDone := wait(c)
	waiting("2")
	// Sampling from now on, the first event sees the whole tree.
	runBackground(t, e)

	got := rec.waitEvents(t, e, "pg_locks", 1)
	ev := got[0]
	fp := sqlfp.Fingerprint(rootQuery)
	if ev.Level != rawtrace.LevelWarning || ev.Priority != rawtrace.PriorityError || ev.Project != "postgres" ||
		ev.IDs != (rawtrace.IDs{QueryFP: fp.Fingerprint, CorrelationID: "corr-123"}) {
		t.Errorf("event: got level %s, priority %s, project %s, ids %+v; want warning, error, postgres, query_fp %s and corr-123", ev.Level, ev.Priority, ev.Project, ev.IDs, fp.Fingerprint)
	}
	for _, raw := range []string{"secret", "4242"} {
		if strings.Contains(string(ev.Line), raw) {
			t.Errorf("the literal %q is in the line: %s", raw, ev.Line)
		}
	}
	t.Logf("%s\n%s", ev.Summary, ev.Line)
	l := lockLineOf(t, ev)
	if l.Server != server || l.Datname != "postgres" || l.Root.PID != aPID || l.Root.State != "idle in transaction" || l.Root.ApplicationName != "shop-web" ||
		l.Root.Endpoint != "POST /checkout" || l.Root.QueryFP != fp.Fingerprint || l.Root.Query != fp.Normalized || l.Root.XactSeconds <= 0 {
		t.Errorf("root: got server %s, datname %s, %+v; want pid %d of shop-web, idle in transaction, POST /checkout, %s", l.Server, l.Datname, l.Root, aPID, fp.Fingerprint)
	}
	if l.Blocked != 2 || len(l.Waiters) != 2 || l.WaitSeconds <= 0.2 {
		t.Errorf("waiters: got blocked %d, wait %v, %+v", l.Blocked, l.WaitSeconds, l.Waiters)
	}
	locks := map[string]lockWaiter{}
	for _, w := range l.Waiters {
		locks[w.Locktype] = w
		if w.Endpoint != "POST /pay" || w.QueryFP != sqlfp.Fingerprint(waiterQuery).Fingerprint || w.Mode == "" || len(w.BlockedBy) != 1 || w.WaitSeconds <= 0 {
			t.Errorf("waiter: got %+v", w)
		}
	}
	if w, ok := locks["transactionid"]; !ok || w.Mode != "ShareLock" || !slices.Equal(w.BlockedBy, []int32{aPID}) {
		t.Errorf("B's wait on A's transaction: got %+v", l.Waiters)
	}
	if w, ok := locks["tuple"]; !ok || w.Relation != "accounts" || w.Mode != "ExclusiveLock" {
		t.Errorf("C's wait on the row behind B: got %+v", l.Waiters)
	}

	// The same tree is not reported again within lock-repeat (1m).
	time.Sleep(1500 * time.Millisecond)
	if n := len(rec.of("pg_locks")); n != 1 {
		t.Errorf("within lock-repeat: %d pg_locks events; want 1", n)
	}
	m := gather(t, reg)
	if v := m["bitville_pg_lock_tree_reads_total{result=ok,server="+server+"}"]; v < 5 {
		t.Errorf("lock tree reads: got %v; want one a sample while the lock is held", v)
	}
	if n := len(rec.of("pg_activity")); n != 0 {
		t.Errorf("%d pg_activity events with 3 sessions under the default threshold", n)
	}

	// A commits; a new transaction of A blocks B again: a new episode.
	release(bDone, cDone)
	hold()
	bDone = wait(b)
	got = rec.waitEvents(t, e, "pg_locks", 2)
	if l := lockLineOf(t, got[1]); l.Root.PID != aPID || l.Blocked != 1 {
		t.Errorf("the second episode: got root %d blocking %d; want %d blocking 1", l.Root.PID, l.Blocked, aPID)
	}
	release(bDone)
}

func TestSqlcommenterTag(t *testing.T) {
	q := "UPDATE t SET a = 1 /*endpoint='POST%20%2Fpay',xcorrelation_id='no',correlation_id='4bf92f35-77b3%2Fx'*/"
	for key, want := range map[string]string{
		"correlation_id": "4bf92f35-77b3/x",
		"endpoint":       "POST /pay",
		"trace_id":       "",
		"relation_id":    "", // a suffix of a tag is not the tag
	} {
		if got := sqlcommenterTag(q, key); got != want {
			t.Errorf("sqlcommenterTag(%q) = %q; want %q", key, got, want)
		}
	}
}
