package pgexporter

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// pg_locks events: when a sample of the background sampler shows a
// session waiting on a lock for longer than events.lock-wait-threshold,
// the sampler reads the lock trees once more, in one query on its own
// connection (pg_blocking_pids, the waiters' ungranted locks, the root
// blockers' application and transaction), and reports each root blocker
// with such a waiter under it: once when the episode (root pid and its
// transaction, or its session when it holds a session-level lock) is
// first seen, then every events.lock-repeat while it lasts. Samples
// without such a waiter cost nothing more than the sample itself.

// lockErrorFactor: a tree whose longest wait reaches this many times the
// threshold is an error rather than a warning.
const lockErrorFactor = 10

// lockWaitersMax is how many waiters a pg_locks event lists at most, the
// longest waits first (blocked counts them all): a tree of thousands would
// not fit a Loki line.
const lockWaitersMax = 100

// lockTreeQuery reads the sessions waiting on a Lock other than the
// exporter's own ($1), with their blockers and the lock each waits for,
// and the rows of their blockers. A relation is named only when it
// belongs to this database (or is shared): another database's oid would
// name an unrelated relation of this one.
const lockTreeQuery = `WITH w AS (
	SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity
	WHERE wait_event_type = 'Lock' AND pid <> ALL($1::int4[])
), l AS (
	SELECT DISTINCT ON (pid) pid, locktype, mode,
		CASE WHEN relation IS NULL THEN ''
			WHEN database IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) THEN relation::regclass::text
			ELSE relation::text END AS relation
	FROM pg_locks WHERE NOT granted AND pid IN (SELECT pid FROM w)
	ORDER BY pid
)
SELECT a.pid, coalesce(a.datname, ''), coalesce(a.state, ''), coalesce(a.application_name, ''),
	coalesce(a.xact_start, a.backend_start),
	coalesce(extract(epoch FROM now() - a.xact_start)::float8, 0),
	coalesce(extract(epoch FROM now() - a.state_change)::float8, 0),
	coalesce(a.query, ''), coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''), w.blockers,
	coalesce(l.locktype, ''), coalesce(l.mode, ''), coalesce(l.relation, '')
FROM pg_stat_activity a LEFT JOIN w ON w.pid = a.pid LEFT JOIN l ON l.pid = a.pid
WHERE w.pid IS NOT NULL OR a.pid IN (SELECT unnest(blockers) FROM w)`

func readLockTrees(ctx context.Context, c *pgx.Conn, exclude []uint32) ([]lockRow, error) {
	if exclude == nil {
		exclude = []uint32{}
	}
	rs, err := c.Query(ctx, lockTreeQuery, exclude)
	if err != nil {
		return nil, fmt.Errorf("cannot read the lock trees: %w", err)
	}
	defer rs.Close()
	var out []lockRow
	for rs.Next() {
		var r lockRow
		if err := rs.Scan(&r.pid, &r.datname, &r.state, &r.appName, &r.since, &r.xactAge, &r.waitSec,
			&r.query, &r.waitType, &r.waitEvent, &r.blockers, &r.locktype, &r.mode, &r.relation); err != nil {
			return nil, fmt.Errorf("cannot read the lock trees: %w", err)
		}
		r.waiting = r.waitType == "Lock"
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the lock trees: %w", err)
	}
	return out, nil
}

// lockEpisode names one blocking episode: the root's pid and the start of
// its transaction (of its session when it is in none).
type lockEpisode struct {
	pid   int32
	since int64 // Unix nanoseconds; 0 when the root's row is unknown
}

// lockEvents turns the sampler's samples into pg_locks events. observe
// and report run on the sampling goroutine only; collect may run
// concurrently (it reads the atomic counters).
type lockEvents struct {
	project, host     string
	threshold, repeat time.Duration

	// episodes holds the roots reported and when, last; pruned to the
	// trees of each read and emptied when nothing waits on a lock.
	episodes map[lockEpisode]time.Time

	readsOK, readsFailed atomic.Uint64
}

func newLockEvents(cfg Config, host string) *lockEvents {
	return &lockEvents{project: cfg.EventsProject, host: host, threshold: cfg.LockWaitThreshold, repeat: cfg.LockRepeat,
		episodes: map[lockEpisode]time.Time{}}
}

// observe looks at a sample (taken at now) and, when a session in it has
// waited on a lock past the threshold, reads the trees on srv and reports
// them. querySize is track_activity_query_size, own the exporter's other
// sessions.
func (ev *lockEvents) observe(ctx context.Context, emit rawtrace.Emitter, srv *server, sample []actRow, querySize int, own []uint32, now time.Time) {
	waiting, past := false, false
	for _, r := range sample {
		if r.waitType == "Lock" {
			waiting = true
			past = past || (r.hasState && r.stateAge > ev.threshold.Seconds())
		}
	}
	if !waiting {
		clear(ev.episodes) // every tree has ended
		return
	}
	if !past {
		return // the episodes go on; a read would change nothing
	}
	var rows []lockRow
	err := srv.with(ctx, func(ctx context.Context, c *pgx.Conn, _ int) error {
		var err error
		rows, err = readLockTrees(ctx, c, own)
		return err
	})
	if err != nil {
		ev.readsFailed.Add(1)
		return
	}
	ev.readsOK.Add(1)
	ev.report(emit, srv.label, rows, querySize, now)
}

// report emits the trees of rows whose longest wait is past the
// threshold, unless their episode was reported less than repeat ago, and
// forgets the episodes that are over.
func (ev *lockEvents) report(emit rawtrace.Emitter, server string, rows []lockRow, querySize int, now time.Time) {
	byPID := make(map[int32]*lockRow, len(rows))
	for i := range rows {
		byPID[rows[i].pid] = &rows[i]
	}
	under, roots := lockRoots(rows, byPID)
	live := make(map[lockEpisode]bool, len(roots))
	fps := map[string]sqlfp.Result{} // by text: waiters often run one statement
	for _, p := range roots {
		root := byPID[p]
		k := lockEpisode{pid: p}
		if root != nil && root.since != nil {
			k.since = root.since.UnixNano()
		}
		live[k] = true
		ws := under[p]
		wait := 0.0
		for _, w := range ws {
			wait = max(wait, w.waitSec)
		}
		if wait <= ev.threshold.Seconds() {
			continue
		}
		if last, ok := ev.episodes[k]; ok && now.Sub(last) < ev.repeat {
			continue
		}
		if !emit.Admit(ev.project, rawtrace.PriorityError) {
			continue // over the rate limit: tried again at the next sample
		}
		e, err := ev.event(server, p, root, ws, wait, querySize, fps, now)
		if err != nil {
			continue // not a line JSON can write; nothing to send
		}
		emit.Emit(e)
		ev.episodes[k] = now
	}
	maps.DeleteFunc(ev.episodes, func(k lockEpisode, _ time.Time) bool { return !live[k] })
}

// pgFields are the fields every pg-exporter event's line starts with.
type pgFields struct {
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Project string    `json:"project"`
	Host    string    `json:"host,omitempty"`
	Server  string    `json:"server"`
}

// The pg_locks line (docs/raw-traces.md).
type lockLine struct {
	pgFields
	Datname     string       `json:"datname,omitempty"`
	WaitSeconds float64      `json:"wait_seconds"`
	Blocked     int          `json:"blocked"`
	Root        lockRootLine `json:"root"`
	Waiters     []lockWaiter `json:"waiters"`
}

type lockRootLine struct {
	PID             int32   `json:"pid"` // 0: a prepared transaction
	State           string  `json:"state,omitempty"`
	ApplicationName string  `json:"application_name,omitempty"`
	Endpoint        string  `json:"endpoint,omitempty"`
	CorrelationID   string  `json:"correlation_id,omitempty"`
	Query           string  `json:"query,omitempty"`
	QueryFP         string  `json:"query_fp,omitempty"`
	XactSeconds     float64 `json:"xact_seconds,omitempty"`
	WaitEventType   string  `json:"wait_event_type,omitempty"`
	WaitEvent       string  `json:"wait_event,omitempty"`
}

type lockWaiter struct {
	PID         int32   `json:"pid"`
	BlockedBy   []int32 `json:"blocked_by,omitempty"`
	Endpoint    string  `json:"endpoint,omitempty"`
	QueryFP     string  `json:"query_fp,omitempty"`
	Query       string  `json:"query,omitempty"`
	WaitSeconds float64 `json:"wait_seconds"`
	Locktype    string  `json:"locktype,omitempty"`
	Mode        string  `json:"mode,omitempty"`
	Relation    string  `json:"relation,omitempty"`
}

// event builds the pg_locks event of the root pid (root is its row, nil
// when the root is a prepared transaction or its row is gone) and the
// waiters under it. Query texts are only ever written normalised.
func (ev *lockEvents) event(server string, pid int32, root *lockRow, ws []*lockRow, wait float64, querySize int, fps map[string]sqlfp.Result, now time.Time) (rawtrace.Event, error) {
	fp := func(q string) sqlfp.Result {
		r, ok := fps[q]
		if !ok {
			r = fingerprintText(q, querySize)
			fps[q] = r
		}
		return r
	}
	level := rawtrace.LevelWarning
	if wait >= lockErrorFactor*ev.threshold.Seconds() {
		level = rawtrace.LevelError
	}
	l := lockLine{pgFields: pgFields{Kind: "pg_locks", Time: now.UTC(), Level: level, Project: ev.project, Host: ev.host, Server: server},
		WaitSeconds: seconds(wait), Blocked: len(ws), Root: lockRootLine{PID: pid}}
	switch {
	case root != nil:
		r := fp(root.query)
		l.Datname = root.datname
		l.Root = lockRootLine{PID: pid, State: root.state, ApplicationName: root.appName,
			Endpoint: parseEndpoint(root.query), CorrelationID: sqlcommenterTag(root.query, "correlation_id"),
			Query: r.Normalized, QueryFP: r.Fingerprint, XactSeconds: seconds(root.xactAge),
			WaitEventType: root.waitType, WaitEvent: root.waitEvent}
	case pid == 0:
		l.Root.State = "prepared transaction"
	default:
		l.Root.State = "unknown" // gone since, or not visible
	}
	if l.Datname == "" && len(ws) > 0 {
		l.Datname = ws[0].datname
	}
	sorted := append([]*lockRow(nil), ws...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].waitSec > sorted[j].waitSec })
	for _, w := range sorted[:min(len(sorted), lockWaitersMax)] {
		r := fp(w.query)
		l.Waiters = append(l.Waiters, lockWaiter{PID: w.pid, BlockedBy: w.blockers, Endpoint: parseEndpoint(w.query),
			QueryFP: r.Fingerprint, Query: r.Normalized, WaitSeconds: seconds(w.waitSec),
			Locktype: w.locktype, Mode: w.mode, Relation: w.relation})
	}
	line, err := json.Marshal(l)
	if err != nil {
		return rawtrace.Event{}, fmt.Errorf("cannot encode the pg_locks event of pid %d: %w", pid, err)
	}
	where := cmp.Or(l.Datname, server)
	ep := ""
	if l.Root.Endpoint != "" {
		ep = " (" + l.Root.Endpoint + ")"
	}
	return rawtrace.Event{
		Kind: "pg_locks", Level: level, Priority: rawtrace.PriorityError, Project: ev.project, Time: l.Time,
		Summary: fmt.Sprintf("lock tree on %s: pid %d%s blocks %d %s for %.1fs", where, pid, ep, len(ws), plural(len(ws), "session"), wait),
		IDs:     rawtrace.IDs{QueryFP: l.Root.QueryFP, CorrelationID: l.Root.CorrelationID},
		Line:    line,
	}, nil
}

// seconds rounds a duration in seconds to the millisecond for the line;
// what JSON cannot write (NaN, ±Inf) is 0.
func seconds(s float64) float64 {
	if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
		return 0
	}
	return math.Round(s*1000) / 1000
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

var descLockTreeReads = prometheus.NewDesc("bitville_pg_lock_tree_reads_total", "Reads of the lock trees for pg_locks events (made only while a session has waited on a lock longer than events.lock-wait-threshold), by result (ok, error).", []string{"server", "result"}, nil)

func (ev *lockEvents) collect(server string, ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descLockTreeReads, prometheus.CounterValue, float64(ev.readsOK.Load()), server, "ok")
	ch <- prometheus.MustNewConstMetric(descLockTreeReads, prometheus.CounterValue, float64(ev.readsFailed.Load()), server, "error")
}
