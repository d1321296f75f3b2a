package pgexporter

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// activityLineOf decodes a pg_activity line.
func activityLineOf(t *testing.T, e rawtrace.Event) activityLine {
	t.Helper()
	var l activityLine
	if err := json.Unmarshal(e.Line, &l); err != nil {
		t.Fatalf("pg_activity line: %v: %s", err, e.Line)
	}
	return l
}

func TestActivityEventsSnapshot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ActiveSessionsThreshold, cfg.ActivityEvery = 2, 10*time.Second
	rows := []actRow{
		{pid: 1, datname: "shop", state: "active", query: "SELECT * FROM t WHERE a = 'secret'", queryAge: 1, hasQuery: true, xactAge: 1, hasXact: true},
		{pid: 2, datname: "shop", state: "idle in transaction", waitType: "Client", wait: "ClientRead", query: "SELECT 1"},
		{pid: 3, datname: "shop", state: "active", waitType: "Lock", wait: "tuple", query: "UPDATE t SET a = 1", queryAge: 7, hasQuery: true},
	}
	fps := []string{"fp1", "fp2", "fp3"}
	eps := []string{"GET /a", "", "POST /b"}
	ev := newActivityEvents(cfg, "db1")
	rec := &recorder{}
	t0 := time.Unix(1_800_000_000, 0)
	ev.observe(rec, "pg:5432/shop", rows[:2], fps, eps, 1024, t0)
	if n := len(rec.of("pg_activity")); n != 0 {
		t.Errorf("2 sessions, threshold 2: %d events; want none", n)
	}
	ev.observe(rec, "pg:5432/shop", rows, fps, eps, 1024, t0)
	got := rec.of("pg_activity")
	if len(got) != 1 {
		t.Fatalf("3 sessions, threshold 2: %d events; want 1", len(got))
	}
	e := got[0]
	if e.Level != rawtrace.LevelInfo || e.Priority != rawtrace.PrioritySlow || e.Project != "postgres" || e.IDs != (rawtrace.IDs{}) ||
		e.Summary != "3 active sessions on shop (threshold 2)" {
		t.Errorf("event: got %+v", e)
	}
	if strings.Contains(string(e.Line), "secret") {
		t.Errorf("a literal in the line: %s", e.Line)
	}
	l := activityLineOf(t, e)
	if l.Kind != "pg_activity" || l.Server != "pg:5432/shop" || l.Datname != "shop" || l.Host != "db1" || l.Active != 3 || l.Threshold != 2 || !l.Time.Equal(t0) {
		t.Errorf("line: got %+v", l)
	}
	want := []activitySession{
		{PID: 3, Datname: "shop", State: "active", WaitEventType: "Lock", WaitEvent: "tuple", QueryFP: "fp3", Endpoint: "POST /b", Query: sqlfp.Fingerprint(rows[2].query).Normalized, Seconds: 7},
		{PID: 1, Datname: "shop", State: "active", QueryFP: "fp1", Endpoint: "GET /a", Query: sqlfp.Fingerprint(rows[0].query).Normalized, Seconds: 1, XactSeconds: 1},
		{PID: 2, Datname: "shop", State: "idle in transaction", WaitEventType: "Client", WaitEvent: "ClientRead", QueryFP: "fp2", Query: "SELECT $1"},
	}
	if len(l.Sessions) != len(want) {
		t.Fatalf("sessions: got %+v; want %+v", l.Sessions, want)
	}
	for i := range want {
		if l.Sessions[i] != want[i] {
			t.Errorf("session %d: got %+v; want %+v (longest running first)", i, l.Sessions[i], want[i])
		}
	}

	// At most one snapshot every activity-every.
	ev.observe(rec, "pg:5432/shop", rows, fps, eps, 1024, t0.Add(9*time.Second))
	if n := len(rec.of("pg_activity")); n != 1 {
		t.Errorf("within activity-every: %d events; want 1", n)
	}
	rows[0].datname = "other"
	ev.observe(rec, "pg:5432/shop", rows, fps, eps, 1024, t0.Add(10*time.Second))
	got = rec.of("pg_activity")
	if len(got) != 2 {
		t.Fatalf("after activity-every: %d events; want 2", len(got))
	}
	if l := activityLineOf(t, got[1]); l.Datname != "" || got[1].Summary != "3 active sessions on pg:5432/shop (threshold 2)" {
		t.Errorf("sessions in two databases: got datname %q, summary %q; want none, the server", l.Datname, got[1].Summary)
	}

	// Threshold 0: never.
	cfg.ActiveSessionsThreshold = 0
	off := newActivityEvents(cfg, "")
	off.observe(rec, "s", rows, fps, eps, 1024, t0)
	if n := len(rec.of("pg_activity")); n != 2 {
		t.Errorf("threshold 0: %d events; want none more", n-2)
	}
}

func TestActivityEventsSessionsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ActiveSessionsThreshold = 1
	n := activitySessionsMax + 20
	rows := make([]actRow, n)
	for i := range rows {
		rows[i] = actRow{pid: int32(i), state: "active", query: "SELECT 1", queryAge: float64(i), hasQuery: true}
	}
	rec := &recorder{}
	newActivityEvents(cfg, "").observe(rec, "s", rows, make([]string, n), make([]string, n), 1024, time.Now())
	l := activityLineOf(t, rec.of("pg_activity")[0])
	if l.Active != n || len(l.Sessions) != activitySessionsMax || l.Sessions[0].PID != int32(n-1) {
		t.Errorf("got active %d, %d sessions, the first %d; want %d, %d, the longest running first", l.Active, len(l.Sessions), l.Sessions[0].PID, n, activitySessionsMax)
	}
}

// TestActivityEvents: three sessions sleep, the threshold is 2: one
// pg_activity snapshot, none again within activity-every.
func TestActivityEvents(t *testing.T) {
	pg := startPG(t)
	dsn := pg.DSN("postgres")
	e, _ := newTestExporter(t, func(c *Config) {
		c.ActivityInterval = 100 * time.Millisecond
		c.ActiveSessionsThreshold = 2
	}, dsn)
	rec := &recorder{}
	e.ShipTo(rec)
	query := "SELECT pg_sleep(5) /*endpoint='GET%20%2Freport'*/"
	for range 3 {
		holdQuery(t, dsn, query)
	}
	runBackground(t, e)
	got := rec.waitEvents(t, e, "pg_activity", 1)
	t.Logf("%s\n%s", got[0].Summary, got[0].Line)
	l := activityLineOf(t, got[0])
	fp := sqlfp.Fingerprint(query)
	if l.Active != 3 || l.Threshold != 2 || l.Datname != "postgres" || l.Server != "127.0.0.1:"+itoa(pg.Port)+"/postgres" || len(l.Sessions) != 3 {
		t.Fatalf("line: got %+v", l)
	}
	for i, s := range l.Sessions {
		if s.PID == 0 || s.State != "active" || s.QueryFP != fp.Fingerprint || s.Query != fp.Normalized || s.Endpoint != "GET /report" || s.WaitEvent != "PgSleep" {
			t.Errorf("session %d: got %+v", i, s)
		}
		if i > 0 && s.Seconds > l.Sessions[i-1].Seconds {
			t.Errorf("sessions not longest running first: %+v", l.Sessions)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(rec.of("pg_activity")); n != 1 {
		t.Errorf("within activity-every (10s): %d pg_activity events; want 1", n)
	}
}
