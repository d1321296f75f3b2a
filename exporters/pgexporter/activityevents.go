package pgexporter

import (
	"cmp"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// pg_activity events: while a sample of the background sampler counts
// more non-idle sessions than events.active-sessions-threshold (the same
// sessions as bitville_pg_active_sessions: the exporter's own left out),
// a snapshot of them, at most one per server every events.activity-every.
// The snapshot is built from the sample itself: no query of its own.

// activitySessionsMax is how many sessions a pg_activity event lists at
// most, the longest running first (active counts them all).
const activitySessionsMax = 100

// activityEvents turns samples into pg_activity events; the sampling
// goroutine is its only user.
type activityEvents struct {
	project, host string
	threshold     int // 0: off
	every         time.Duration
	last          time.Time // of the last snapshot; zero before the first
}

func newActivityEvents(cfg Config, host string) *activityEvents {
	return &activityEvents{project: cfg.EventsProject, host: host, threshold: cfg.ActiveSessionsThreshold, every: cfg.ActivityEvery}
}

// The pg_activity line (docs/raw-traces.md).
type activityLine struct {
	pgFields
	Datname   string            `json:"datname,omitempty"` // when every session is in one database
	Active    int               `json:"active"`
	Threshold int               `json:"threshold"`
	Sessions  []activitySession `json:"sessions"`
}

type activitySession struct {
	PID           int32   `json:"pid"`
	Datname       string  `json:"datname,omitempty"`
	State         string  `json:"state,omitempty"`
	WaitEventType string  `json:"wait_event_type,omitempty"`
	WaitEvent     string  `json:"wait_event,omitempty"`
	QueryFP       string  `json:"query_fp,omitempty"`
	Endpoint      string  `json:"endpoint,omitempty"`
	Query         string  `json:"query,omitempty"`
	Seconds       float64 `json:"seconds,omitempty"` // now() - query_start
	XactSeconds   float64 `json:"xact_seconds,omitempty"`
}

// observe emits a snapshot of the sample rows taken at now when they are
// more than the threshold and the last snapshot is at least every old.
// fps and eps are the rows' query_fp and endpoint, as the sample counted
// them; querySize is track_activity_query_size.
func (ev *activityEvents) observe(emit rawtrace.Emitter, server string, rows []actRow, fps, eps []string, querySize int, now time.Time) {
	if ev.threshold == 0 || len(rows) <= ev.threshold {
		return
	}
	if !ev.last.IsZero() && now.Sub(ev.last) < ev.every {
		return
	}
	if !emit.Admit(ev.project, rawtrace.PrioritySlow) {
		return // over the rate limit: tried again at the next sample
	}
	e, err := ev.event(server, rows, fps, eps, querySize, now)
	if err != nil {
		return // not a line JSON can write; nothing to send
	}
	emit.Emit(e)
	ev.last = now
}

func (ev *activityEvents) event(server string, rows []actRow, fps, eps []string, querySize int, now time.Time) (rawtrace.Event, error) {
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	// Longest running first; sessions without a query start last.
	sort.SliceStable(order, func(i, j int) bool {
		a, b := rows[order[i]], rows[order[j]]
		if a.hasQuery != b.hasQuery {
			return a.hasQuery
		}
		return a.queryAge > b.queryAge
	})
	l := activityLine{pgFields: pgFields{Kind: "pg_activity", Time: now.UTC(), Level: rawtrace.LevelInfo, Project: ev.project, Host: ev.host, Server: server},
		Datname: rows[0].datname, Active: len(rows), Threshold: ev.threshold}
	for _, r := range rows {
		if r.datname != l.Datname {
			l.Datname = ""
			break
		}
	}
	for _, i := range order[:min(len(order), activitySessionsMax)] {
		r := rows[i]
		s := activitySession{PID: r.pid, Datname: r.datname, State: r.state, WaitEventType: r.waitType, WaitEvent: r.wait,
			QueryFP: fps[i], Endpoint: eps[i], Seconds: seconds(r.queryAge), XactSeconds: seconds(r.xactAge)}
		if r.query != "" {
			s.Query = fingerprintText(r.query, querySize).Normalized
		}
		l.Sessions = append(l.Sessions, s)
	}
	line, err := json.Marshal(l)
	if err != nil {
		return rawtrace.Event{}, fmt.Errorf("cannot encode the pg_activity event of %s: %w", server, err)
	}
	where := cmp.Or(l.Datname, server)
	return rawtrace.Event{
		Kind: "pg_activity", Level: rawtrace.LevelInfo, Priority: rawtrace.PrioritySlow, Project: ev.project, Time: l.Time,
		Summary: fmt.Sprintf("%d active sessions on %s (threshold %d)", len(rows), where, ev.threshold),
		Line:    line,
	}, nil
}
