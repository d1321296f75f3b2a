package pgexporter

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// The locks collector reads, at every scrape and in one query, the
// sessions waiting on a heavyweight lock (wait_event_type = 'Lock') with
// pg_blocking_pids() — called for those rows only — and the rows of their
// blockers. It builds lock trees: a root blocker (a blocker not itself
// waiting on a Lock) and the sessions it blocks directly or transitively.
//
// Gauges describe the last scrape only; after a failed scrape none is
// emitted. bitville_pg_blocked_sessions and bitville_pg_lock_wait_seconds_max
// stay at 0 for databases that had blocked sessions before (so an alert
// resolves instead of going stale); the other series exist only while
// something is blocked.

func init() {
	collectorFactories = append(collectorFactories, func(cfg Config) collector { return newLocks(cfg.LabelLimit, cfg.LabelTTL) })
}

// lockTreesKept is how many lock trees LockTrees returns at most.
const lockTreesKept = 50

// LockTree is a root blocker and the sessions it blocks, directly or
// transitively, as last seen by a scrape.
type LockTree struct {
	Server     string           `json:"server"`     // the DSN's label
	FirstSeen  time.Time        `json:"first_seen"` // the first scrape that saw this root blocking (exporter clock)
	LastSeen   time.Time        `json:"last_seen"`  // the last one
	Datname    string           `json:"datname"`
	RootPID    int32            `json:"root_pid"` // 0: a prepared transaction (pg_blocking_pids reports those as 0)
	RootState  string           `json:"root_state"`
	RootAge    float64          `json:"root_age_seconds"` // seconds since the root's transaction began (server clock); 0 if unknown
	QueryFP    string           `json:"query_fp"`         // fingerprint of the root's last query
	Query      string           `json:"query"`            // its normalised text
	Blocked    []BlockedSession `json:"blocked"`
	rootXactAt time.Time
}

// BlockedSession is a session waiting under a root blocker.
type BlockedSession struct {
	PID         int32   `json:"pid"`
	Datname     string  `json:"datname"`
	WaitSeconds float64 `json:"wait_seconds"` // now() - state_change (server clock)
	QueryFP     string  `json:"query_fp"`
}

const locksQuery = `WITH w AS (
	SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity WHERE wait_event_type = 'Lock'
)
SELECT a.pid, coalesce(a.datname, ''), coalesce(a.state, ''), a.xact_start,
	coalesce(extract(epoch FROM now() - a.xact_start)::float8, 0),
	coalesce(extract(epoch FROM now() - a.state_change)::float8, 0),
	coalesce(a.query, ''), coalesce(a.wait_event_type, ''), w.blockers
FROM pg_stat_activity a LEFT JOIN w ON w.pid = a.pid
WHERE w.pid IS NOT NULL OR a.pid IN (SELECT unnest(blockers) FROM w)`

type lockRow struct {
	pid       int32
	datname   string
	state     string
	xactStart *time.Time
	xactAge   float64
	waitSec   float64
	query     string
	waitType  string
	blockers  []int32
	waiting   bool // a row of the waiters (wait_event_type = 'Lock')

	// Read for the pg_locks events only (lockevents.go).
	appName, waitEvent       string
	locktype, mode, relation string     // the lock a waiter waits for
	since                    *time.Time // xact_start, else backend_start: with pid, what names an episode
}

type lockDBState struct{ datname, state string }
type lockDBFP struct{ datname, fp string }

// locks is the collector's state for one server.
type locks struct {
	fps    *labelset.Set[string, struct{}] // query_fp values with a label of their own
	fpTTL  time.Duration                   // idle time after which a query_fp gives its label back; 0: never
	seenDB map[string]bool                 // databases that had blocked sessions

	ok          bool // the last update succeeded
	blocked     map[string]float64
	waitMax     map[string]float64
	roots       map[lockDBState]float64
	rootAgeMax  map[string]float64
	blockedByFP map[lockDBFP]float64

	mu    sync.Mutex // guards trees (LockTrees runs outside the scrape lock)
	trees []LockTree // a ring: the oldest first
}

func newLocks(labelLimit int, labelTTL time.Duration) *locks {
	fps := labelset.New(labelset.Options[string, struct{}]{
		Limit: labelLimit, Overflow: labelset.Other,
		New: func(string) struct{} { return struct{}{} },
	})
	return &locks{fps: fps, fpTTL: labelTTL, seenDB: map[string]bool{}}
}

func (l *locks) name() string { return "locks" }

func (l *locks) update(ctx context.Context, conn *pgx.Conn, version int) error {
	l.ok = false
	rows, err := conn.Query(ctx, locksQuery)
	if err != nil {
		return fmt.Errorf("cannot read the sessions waiting on locks: %w", err)
	}
	var all []lockRow
	for rows.Next() {
		var r lockRow
		if err := rows.Scan(&r.pid, &r.datname, &r.state, &r.xactStart, &r.xactAge, &r.waitSec, &r.query, &r.waitType, &r.blockers); err != nil {
			rows.Close()
			return fmt.Errorf("cannot read the sessions waiting on locks: %w", err)
		}
		r.waiting = r.waitType == "Lock"
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read the sessions waiting on locks: %w", err)
	}
	l.build(all, time.Now())
	l.ok = true
	return nil
}

// build turns the rows into the gauges and the lock trees.
func (l *locks) build(all []lockRow, now time.Time) {
	byPID := make(map[int32]*lockRow, len(all))
	for i := range all {
		byPID[all[i].pid] = &all[i]
	}
	l.blocked, l.waitMax = map[string]float64{}, map[string]float64{}
	l.roots, l.rootAgeMax, l.blockedByFP = map[lockDBState]float64{}, map[string]float64{}, map[lockDBFP]float64{}
	if l.fpTTL > 0 {
		// The gauges are rebuilt at every scrape: an expired value
		// has no series to delete.
		l.fps.Expire(now.Add(-l.fpTTL), nil)
	}

	for i := range all {
		if w := &all[i]; w.waiting {
			l.blocked[w.datname]++
			l.seenDB[w.datname] = true
			l.waitMax[w.datname] = max(l.waitMax[w.datname], max(w.waitSec, 0))
		}
	}
	under, rootPIDs := lockRoots(all, byPID)
	var trees []LockTree
	for _, p := range rootPIDs {
		t := LockTree{RootPID: p, LastSeen: now, FirstSeen: now}
		if r, ok := byPID[p]; ok {
			t.Datname, t.RootState, t.RootAge = r.datname, r.state, max(r.xactAge, 0)
			if r.xactStart != nil {
				t.rootXactAt = *r.xactStart
			}
			fp := sqlfp.Fingerprint(r.query)
			t.QueryFP, t.Query = fp.Fingerprint, fp.Normalized
		} else if p == 0 {
			t.RootState = "prepared transaction"
		} else {
			t.RootState = "unknown" // gone since, or not visible
		}
		ws := under[p]
		sort.Slice(ws, func(i, j int) bool { return ws[i].pid < ws[j].pid })
		for _, w := range ws {
			t.Blocked = append(t.Blocked, BlockedSession{PID: w.pid, Datname: w.datname, WaitSeconds: max(w.waitSec, 0), QueryFP: sqlfp.Fingerprint(w.query).Fingerprint})
		}
		l.roots[lockDBState{t.Datname, t.RootState}]++
		l.rootAgeMax[t.Datname] = max(l.rootAgeMax[t.Datname], t.RootAge)
		l.blockedByFP[lockDBFP{t.Datname, l.fpLabel(t.QueryFP, now)}] += float64(len(ws))
		trees = append(trees, t)
	}
	l.remember(trees)
}

// lockRoots attaches each waiter to its roots: the blockers reachable
// through blockers that wait on a Lock themselves. Sessions in a cycle (a
// deadlock the server is about to break) reach no root. It returns the
// waiters under each root pid and the root pids in ascending order;
// byPID indexes all.
func lockRoots(all []lockRow, byPID map[int32]*lockRow) (map[int32][]*lockRow, []int32) {
	under := map[int32][]*lockRow{}
	for i := range all {
		w := &all[i]
		if !w.waiting {
			continue
		}
		// visited ends the walk on a cycle and counts a root reached
		// along two paths once.
		visited := map[int32]bool{w.pid: true}
		queue := append([]int32(nil), w.blockers...)
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			if visited[p] {
				continue
			}
			visited[p] = true
			if b, ok := byPID[p]; ok && b.waiting {
				queue = append(queue, b.blockers...)
				continue
			}
			under[p] = append(under[p], w)
		}
	}
	rootPIDs := make([]int32, 0, len(under))
	for p := range under {
		rootPIDs = append(rootPIDs, p)
	}
	sort.Slice(rootPIDs, func(i, j int) bool { return rootPIDs[i] < rootPIDs[j] })
	return under, rootPIDs
}

// fpLabel bounds the query_fp values: the first labelLimit fingerprints
// seen keep their own label, later ones (and none) are "other".
func (l *locks) fpLabel(fp string, now time.Time) string {
	if fp == "" {
		return labelset.OtherValue
	}
	fp, _ = l.fps.Get(fp, now)
	return fp
}

// remember puts the trees of a scrape into the ring; a tree whose root
// (same pid, same transaction) is already there is updated in place.
func (l *locks) remember(trees []LockTree) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range trees {
		found := false
		for i := range l.trees {
			o := &l.trees[i]
			if o.RootPID == t.RootPID && o.rootXactAt.Equal(t.rootXactAt) && o.RootState != "unknown" && t.RootState != "unknown" {
				t.FirstSeen = o.FirstSeen
				*o = t
				found = true
				break
			}
		}
		if !found {
			l.trees = append(l.trees, t)
		}
	}
	if n := len(l.trees) - lockTreesKept; n > 0 {
		l.trees = append(l.trees[:0], l.trees[n:]...)
	}
}

// Metrics of the locks collector; server is the DSN's label.
var (
	descLockBlocked     = prometheus.NewDesc("bitville_pg_blocked_sessions", "Sessions waiting on a heavyweight lock (wait_event_type Lock) at the last scrape.", []string{"server", "datname"}, nil)
	descLockWaitMax     = prometheus.NewDesc("bitville_pg_lock_wait_seconds_max", "Longest current lock wait: now() - state_change of the waiting sessions (server clock).", []string{"server", "datname"}, nil)
	descLockRoots       = prometheus.NewDesc("bitville_pg_lock_root_blockers", "Root blockers (blocking, not waiting on a lock themselves) by their state; \"idle in transaction\" is an application holding a transaction open.", []string{"server", "datname", "state"}, nil)
	descLockRootAgeMax  = prometheus.NewDesc("bitville_pg_lock_root_blocker_age_seconds_max", "Age of the oldest root blocker's transaction (now() - xact_start).", []string{"server", "datname"}, nil)
	descLockBlockedByFP = prometheus.NewDesc("bitville_pg_lock_blocked_by_root", "Sessions blocked, directly or transitively, under root blockers whose last query has this fingerprint.", []string{"server", "datname", "query_fp"}, nil)
)

func (l *locks) collect(server string, ch chan<- prometheus.Metric) {
	if !l.ok {
		return
	}
	for db := range l.seenDB {
		ch <- prometheus.MustNewConstMetric(descLockBlocked, prometheus.GaugeValue, l.blocked[db], server, db)
		ch <- prometheus.MustNewConstMetric(descLockWaitMax, prometheus.GaugeValue, l.waitMax[db], server, db)
	}
	for k, v := range l.roots {
		ch <- prometheus.MustNewConstMetric(descLockRoots, prometheus.GaugeValue, v, server, k.datname, k.state)
	}
	for db, v := range l.rootAgeMax {
		ch <- prometheus.MustNewConstMetric(descLockRootAgeMax, prometheus.GaugeValue, v, server, db)
	}
	for k, v := range l.blockedByFP {
		ch <- prometheus.MustNewConstMetric(descLockBlockedByFP, prometheus.GaugeValue, v, server, k.datname, k.fp)
	}
}

// lockTrees returns a copy of the ring, the oldest first.
func (l *locks) lockTrees() []LockTree {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LockTree, len(l.trees))
	for i, t := range l.trees {
		t.Blocked = append([]BlockedSession(nil), t.Blocked...)
		out[i] = t
	}
	return out
}

// LockTrees returns the last lock trees the scrapes saw (at most 50 per
// server), the oldest first, for a raw-trace sink. Safe to call at any time.
func (e *Exporter) LockTrees() []LockTree {
	var out []LockTree
	for _, s := range e.servers {
		for _, c := range s.collectors {
			if l, ok := c.(*locks); ok {
				ts := l.lockTrees()
				for i := range ts {
					ts[i].Server = s.srv.label
				}
				out = append(out, ts...)
			}
		}
	}
	return out
}
