package pgexporter

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/periodic"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// The activity collector samples pg_stat_activity in the background, every
// ActivityInterval, on a connection of its own (RunBackground): each
// non-idle client session adds one to bitville_pg_session_samples_total,
// so rate() of it is the average number of active sessions (active-session
// history), by state, wait event, query fingerprint and endpoint. The
// gauges describe the last sample. A scrape only reads what the sampler
// stored (update does nothing).

func init() {
	collectorFactories = append(collectorFactories, func(cfg Config) collector { return newActivity(cfg) })
}

// Metrics of the activity collector; server is the DSN's label.
var (
	descActSamples       = prometheus.NewDesc("bitville_pg_session_samples_total", "Non-idle client sessions seen by the pg_stat_activity sampler, one per session per sample (rate() is average active sessions).", []string{"server", "datname", "state", "wait_event_type", "wait_event", "query_fp", "endpoint"}, nil)
	descActOverflow      = prometheus.NewDesc("bitville_pg_session_label_overflow_total", "Session samples whose query_fp or endpoint was counted as \"other\" because the label limit was reached.", []string{"server", "label"}, nil)
	descActSessions      = prometheus.NewDesc("bitville_pg_active_sessions", "Non-idle client sessions at the last sample.", []string{"server", "datname", "state", "wait_event_type"}, nil)
	descActOldestXact    = prometheus.NewDesc("bitville_pg_oldest_transaction_seconds", "Age of the oldest open transaction (now() - xact_start) at the last sample.", []string{"server", "datname", "state"}, nil)
	descActLongestQuery  = prometheus.NewDesc("bitville_pg_longest_query_seconds", "Run time of the longest running active query (now() - query_start) at the last sample.", []string{"server", "datname"}, nil)
	descActIdleInXact    = prometheus.NewDesc("bitville_pg_idle_in_transaction_sessions", "Sessions idle in transaction (aborted included) at the last sample.", []string{"server", "datname"}, nil)
	descActIdleInXactMax = prometheus.NewDesc("bitville_pg_idle_in_transaction_seconds_max", "Longest time a session has been idle in transaction (now() - state_change) at the last sample.", []string{"server", "datname"}, nil)
	descActRuns          = prometheus.NewDesc("bitville_pg_activity_samples_total", "pg_stat_activity samples taken, by result (ok, error).", []string{"server", "result"}, nil)
	descActDuration      = prometheus.NewDesc("bitville_pg_activity_sample_duration_seconds", "How long the last pg_stat_activity sample took.", []string{"server"}, nil)
)

type actSampleKey struct{ datname, state, waitType, wait, fp, endpoint string }
type actSessKey struct{ datname, state, waitType string }
type actXactKey struct{ datname, state string }

// activity is the sampler's state for one server. run writes it, collect
// reads it, on different goroutines: mu guards everything below it.
type activity struct {
	interval   time.Duration
	cacheLimit int
	labelTTL   time.Duration // idle time after which a query_fp or endpoint value gives its label back; 0: never

	mu         sync.Mutex
	samples    map[actSampleKey]float64
	fps        *labelset.Set[string, struct{}] // query_fp values with a label of their own
	endpoints  *labelset.Set[string, struct{}] // endpoint values with a label of their own
	fpOverflow sampleCount                     // samples whose query_fp was counted as "other"
	epOverflow sampleCount                     // samples whose endpoint was counted as "other"
	sessions   map[actSessKey]float64
	oldest     map[actXactKey]float64
	longest    map[string]float64 // datname → seconds
	idleXact   map[string]float64 // datname → sessions
	idleMax    map[string]float64 // datname → seconds
	ok, errs   float64
	took       time.Duration
	lastErr    error

	// Used by the sampling goroutine only.
	emit   rawtrace.Emitter // set by run
	lockEv *lockEvents      // also read by collect (its counters)
	actEv  *activityEvents
	seed   maphash.Seed
	byID   map[int64]string  // query_id → query_fp (PostgreSQL 14+)
	byText map[uint64]string // hash of the text → query_fp
}

func newActivity(cfg Config) *activity {
	limit := cfg.TextCache
	if limit < 100 {
		limit = 100
	}
	host, _ := os.Hostname() // "" leaves the events' host out
	a := &activity{
		interval: cfg.ActivityInterval, cacheLimit: limit, labelTTL: cfg.LabelTTL,
		samples: map[actSampleKey]float64{},
		seed:    maphash.MakeSeed(), byID: map[int64]string{}, byText: map[uint64]string{},
		emit:   rawtrace.Discard,
		lockEv: newLockEvents(cfg, host), actEv: newActivityEvents(cfg, host),
	}
	// A value that expires takes its sample series along (Expire runs in
	// fold, with mu held): they are what the label bound is for.
	a.fps = labelset.New(labelset.Options[string, struct{}]{
		Limit: cfg.LabelLimit, Overflow: labelset.Other, Overflowed: &a.fpOverflow,
		New: func(string) struct{} { return struct{}{} },
		Delete: func(fp string, _ struct{}) {
			maps.DeleteFunc(a.samples, func(k actSampleKey, _ float64) bool { return k.fp == fp })
		},
	})
	a.endpoints = labelset.New(labelset.Options[string, struct{}]{
		Limit: cfg.LabelLimit, Overflow: labelset.Other, Overflowed: &a.epOverflow,
		New: func(string) struct{} { return struct{}{} },
		Delete: func(ep string, _ struct{}) {
			maps.DeleteFunc(a.samples, func(k actSampleKey, _ float64) bool { return k.endpoint == ep })
		},
	})
	return a
}

// sampleCount counts the samples sent to "other" (a labelset.Counter);
// the activity's lock guards it.
type sampleCount float64

func (c *sampleCount) Inc() { *c++ }

func (a *activity) name() string { return "activity" }

// update does nothing: the work is done by run, between scrapes.
func (a *activity) update(context.Context, *pgx.Conn, int) error { return nil }

// run samples every interval until ctx ends, sending the raw-trace events
// the samples call for to emit. The sample runs in this goroutine, so a
// slow one delays the next tick and time.Ticker drops the ticks missed
// meanwhile: samples never queue up.
func (a *activity) run(ctx context.Context, srv, scrapes *server, emit rawtrace.Emitter) {
	if a.interval <= 0 {
		return
	}
	a.emit = emit
	// A sample may take up to the statement timeout (the first one also
	// connects); the ticks it overlaps are skipped.
	deadline := max(a.interval, srv.timeout)
	periodic.Run(ctx, a.interval, func() { a.sampleOnce(ctx, srv, scrapes, deadline) })
}

// sampleOnce takes a sample on srv, leaving out the sessions of the
// scrapes (scrapes may be nil).
func (a *activity) sampleOnce(ctx context.Context, srv, scrapes *server, deadline time.Duration) {
	if ctx.Err() != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	var rows []actRow
	var querySize int
	var own []uint32
	if scrapes != nil {
		own = scrapes.backendPIDs()
	}
	err := srv.with(sctx, func(ctx context.Context, c *pgx.Conn, version int) error {
		var err error
		rows, querySize, err = readActivity(ctx, c, version, own)
		return err
	})
	took := time.Since(start)
	if err != nil {
		a.mu.Lock()
		a.errs++
		a.lastErr = err
		a.took = took
		a.mu.Unlock()
		return
	}
	fps, eps := a.fold(rows, querySize, start, took)
	if a.emit == rawtrace.Discard {
		return // not even the lock trees' read
	}
	// The events' read of the lock trees (rare) shares the sample's
	// deadline.
	now := time.Now()
	a.actEv.observe(a.emit, srv.label, rows, fps, eps, querySize, now)
	a.lockEv.observe(sctx, a.emit, srv, rows, querySize, own, now)
}

// actRow is one session of a sample.
type actRow struct {
	pid                                   int32
	datname, state, waitType, wait, query string
	queryID                               int64 // 0: unknown
	xactAge, queryAge, stateAge           float64
	hasXact, hasQuery, hasState           bool
}

// activityQuery reads the non-idle client sessions other than the
// exporter's own (this one and $1, the scrapes'), with ages on the
// server's clock.
func activityQuery(version int) string {
	queryID := "NULL::int8"
	if version >= 140000 {
		queryID = "query_id"
	}
	// current_setting() shows the size with its unit ("1kB"), which
	// pg_size_bytes() turns into bytes; pg_settings would build the whole
	// settings table on every sample.
	return `SELECT pg_size_bytes(current_setting('track_activity_query_size'))::int, pid,
		coalesce(datname, ''), coalesce(state, ''), coalesce(wait_event_type, ''), coalesce(wait_event, ''),
		coalesce(query, ''), ` + queryID + `,
		extract(epoch FROM now() - xact_start)::float8,
		extract(epoch FROM now() - query_start)::float8,
		extract(epoch FROM now() - state_change)::float8
		FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> ALL($1::int4[]) AND state IS DISTINCT FROM 'idle'`
}

func readActivity(ctx context.Context, c *pgx.Conn, version int, exclude []uint32) ([]actRow, int, error) {
	if exclude == nil {
		exclude = []uint32{}
	}
	rs, err := c.Query(ctx, activityQuery(version), exclude)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read pg_stat_activity: %w", err)
	}
	defer rs.Close()
	var out []actRow
	size := 0
	for rs.Next() {
		var r actRow
		var qid *int64
		var xa, qa, sa *float64
		if err := rs.Scan(&size, &r.pid, &r.datname, &r.state, &r.waitType, &r.wait, &r.query, &qid, &xa, &qa, &sa); err != nil {
			return nil, 0, fmt.Errorf("cannot read pg_stat_activity: %w", err)
		}
		if qid != nil {
			r.queryID = *qid
		}
		if xa != nil {
			r.xactAge, r.hasXact = max(*xa, 0), true
		}
		if qa != nil {
			r.queryAge, r.hasQuery = max(*qa, 0), true
		}
		if sa != nil {
			r.stateAge, r.hasState = max(*sa, 0), true
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, 0, fmt.Errorf("cannot read pg_stat_activity: %w", err)
	}
	return out, size, nil
}

// fold adds a sample taken at now to the counters and replaces the gauges.
// It returns the query_fp and endpoint of each row.
func (a *activity) fold(rows []actRow, querySize int, now time.Time, took time.Duration) (fps, eps []string) {
	// Fingerprints are computed outside the lock (collect never waits on
	// the parser).
	fps = make([]string, len(rows))
	eps = make([]string, len(rows))
	for i, r := range rows {
		fps[i] = a.fingerprint(r, querySize)
		eps[i] = parseEndpoint(r.query)
	}
	sessions := map[actSessKey]float64{}
	oldest := map[actXactKey]float64{}
	longest := map[string]float64{}
	idleXact := map[string]float64{}
	idleMax := map[string]float64{}

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.labelTTL > 0 {
		cutoff := now.Add(-a.labelTTL)
		a.fps.Expire(cutoff, nil)
		a.endpoints.Expire(cutoff, nil)
	}
	for i, r := range rows {
		state := r.state
		if state == "" {
			// Another role's session without pg_read_all_stats: PostgreSQL
			// hides its state, query and waits.
			state = "unknown"
		}
		waitType, wait := r.waitType, r.wait
		if waitType == "" {
			// Not waiting: an active session is on CPU (or in a wait
			// PostgreSQL does not instrument); a session in another state
			// (idle in transaction, fastpath, disabled) is waiting for its
			// client, which is not a wait event: "none".
			if state == "active" {
				waitType, wait = "CPU", "CPU"
			} else {
				waitType, wait = "none", "none"
			}
		} else if wait == "" {
			wait = "none"
		}
		fp, _ := a.fps.Get(fps[i], now)
		ep := eps[i]
		if ep != "" { // no endpoint takes no slot
			ep, _ = a.endpoints.Get(ep, now)
		}
		a.samples[actSampleKey{r.datname, state, waitType, wait, fp, ep}]++
		sessions[actSessKey{r.datname, state, waitType}]++
		if r.hasXact {
			k := actXactKey{r.datname, state}
			if v, ok := oldest[k]; !ok || r.xactAge > v {
				oldest[k] = r.xactAge
			}
		}
		if state == "active" && r.hasQuery {
			if v, ok := longest[r.datname]; !ok || r.queryAge > v {
				longest[r.datname] = r.queryAge
			}
		}
		if strings.HasPrefix(state, "idle in transaction") {
			idleXact[r.datname]++
			if r.hasState {
				if v, ok := idleMax[r.datname]; !ok || r.stateAge > v {
					idleMax[r.datname] = r.stateAge
				}
			}
		}
	}
	a.sessions, a.oldest, a.longest, a.idleXact, a.idleMax = sessions, oldest, longest, idleXact, idleMax
	a.ok++
	a.took = took
	a.lastErr = nil
	return fps, eps
}

// fingerprint gives the session's query_fp: by query_id when there is one
// (PostgreSQL 14+ with compute_query_id), else by a hash of the text;
// both caches are bounded (cleared when full). A text as long as
// track_activity_query_size was cut by PostgreSQL: FingerprintTruncated.
func (a *activity) fingerprint(r actRow, querySize int) string {
	if r.query == "" {
		return sqlfp.EmptyFingerprint
	}
	if r.queryID != 0 {
		if fp, ok := a.byID[r.queryID]; ok {
			return fp
		}
	}
	cut := queryCut(r.query, querySize)
	h := maphash.String(a.seed, r.query)
	fp, ok := a.byText[h]
	if !ok {
		fp = fingerprintText(r.query, querySize).Fingerprint
		if len(a.byText) >= a.cacheLimit {
			clear(a.byText)
		}
		a.byText[h] = fp
	}
	if r.queryID != 0 && !cut {
		// Only a complete text names the query_id's fingerprint.
		if len(a.byID) >= a.cacheLimit {
			clear(a.byID)
		}
		a.byID[r.queryID] = fp
	}
	return fp
}

// collect emits the counters and the gauges of the last sample.
func (a *activity) collect(server string, ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.samples {
		ch <- prometheus.MustNewConstMetric(descActSamples, prometheus.CounterValue, v, server, k.datname, k.state, k.waitType, k.wait, k.fp, k.endpoint)
	}
	ch <- prometheus.MustNewConstMetric(descActOverflow, prometheus.CounterValue, float64(a.fpOverflow), server, "query_fp")
	ch <- prometheus.MustNewConstMetric(descActOverflow, prometheus.CounterValue, float64(a.epOverflow), server, "endpoint")
	for k, v := range a.sessions {
		ch <- prometheus.MustNewConstMetric(descActSessions, prometheus.GaugeValue, v, server, k.datname, k.state, k.waitType)
	}
	for k, v := range a.oldest {
		ch <- prometheus.MustNewConstMetric(descActOldestXact, prometheus.GaugeValue, v, server, k.datname, k.state)
	}
	for d, v := range a.longest {
		ch <- prometheus.MustNewConstMetric(descActLongestQuery, prometheus.GaugeValue, v, server, d)
	}
	for d, v := range a.idleXact {
		ch <- prometheus.MustNewConstMetric(descActIdleInXact, prometheus.GaugeValue, v, server, d)
	}
	for d, v := range a.idleMax {
		ch <- prometheus.MustNewConstMetric(descActIdleInXactMax, prometheus.GaugeValue, v, server, d)
	}
	ch <- prometheus.MustNewConstMetric(descActRuns, prometheus.CounterValue, a.ok, server, "ok")
	ch <- prometheus.MustNewConstMetric(descActRuns, prometheus.CounterValue, a.errs, server, "error")
	ch <- prometheus.MustNewConstMetric(descActDuration, prometheus.GaugeValue, a.took.Seconds(), server)
	a.lockEv.collect(server, ch)
}
