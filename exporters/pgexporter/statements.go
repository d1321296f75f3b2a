package pgexporter

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// The statements collector reads pg_stat_statements(false) — counters
// without query texts — every scrape, fetches the text only of queryids it
// has not seen, and keeps queryid → query_fp. It turns pg_stat_statements'
// absolute counters into its own monotonic ones per (datname, query_fp):
// an entry seen for the first time, or again after a reset or an eviction
// (its calls went down), adds its whole value; afterwards only increases.

// stmtKey is a pg_stat_statements entry.
type stmtKey struct {
	userid, dbid uint32
	queryid      int64
	toplevel     bool
}

// stmtCounters are an entry's counters, or sums of them.
type stmtCounters struct {
	calls, rows, blksHit, blksRead, tempBytes, walBytes float64
	execSec, planSec                                    float64
}

func (c *stmtCounters) add(d stmtCounters) {
	c.calls += d.calls
	c.rows += d.rows
	c.blksHit += d.blksHit
	c.blksRead += d.blksRead
	c.tempBytes += d.tempBytes
	c.walBytes += d.walBytes
	c.execSec += d.execSec
	c.planSec += d.planSec
}

func (c stmtCounters) minus(p stmtCounters) stmtCounters {
	return stmtCounters{
		calls: c.calls - p.calls, rows: c.rows - p.rows, blksHit: c.blksHit - p.blksHit, blksRead: c.blksRead - p.blksRead,
		tempBytes: c.tempBytes - p.tempBytes, walBytes: c.walBytes - p.walBytes, execSec: c.execSec - p.execSec, planSec: c.planSec - p.planSec,
	}
}

// decreased says some counter went down: the entry was reset or evicted
// and created again since the last scrape.
func (c stmtCounters) decreased(p stmtCounters) bool {
	return c.calls < p.calls || c.execSec < p.execSec || c.rows < p.rows || c.blksHit < p.blksHit || c.blksRead < p.blksRead ||
		c.tempBytes < p.tempBytes || c.walBytes < p.walBytes || c.planSec < p.planSec
}

type fpKey struct{ datname, fp string }

// statements is the collector's state for one server.
type statements struct {
	topQueries int
	textCache  int

	last      map[stmtKey]stmtCounters // absolute values at the last scrape
	fps       map[int64]string         // queryid → query_fp
	norm      map[string]string        // query_fp → normalised text, for fingerprints in fps
	all       map[fpKey]*stmtCounters  // totals of every fingerprint seen (bounded by textCache)
	other     map[string]*stmtCounters // datname → what query_fp="other" counts
	score     map[fpKey]float64        // recent time, halved every scrape
	shown     map[fpKey]bool           // the fingerprints with series of their own
	blockSize float64
	lastReset time.Time // pg_stat_statements_info.stats_reset (PG14+)
	dealloc   float64   // pg_stat_statements_info.dealloc (PG14+)
	entries   int       // rows read at the last scrape
	noQueryID float64   // rows without a queryid (another user's, without pg_read_all_stats)
	planning  bool      // pg_stat_statements.track_planning was on at the last scrape

	// labels are the label pairs of the exposed series, built once per
	// (datname, query_fp) rather than at every scrape; server is the label
	// they were built with.
	labels      map[fpKey][]*dto.LabelPair
	labelServer string
}

func newStatements(topQueries, textCache int) *statements {
	return &statements{
		topQueries: topQueries, textCache: textCache,
		last: map[stmtKey]stmtCounters{}, fps: map[int64]string{}, norm: map[string]string{},
		all: map[fpKey]*stmtCounters{}, other: map[string]*stmtCounters{}, score: map[fpKey]float64{}, shown: map[fpKey]bool{},
	}
}

type stmtRow struct {
	key     stmtKey
	datname string
	c       stmtCounters
}

func (s *statements) name() string { return "statements" }

// update reads pg_stat_statements and folds it into the totals.
func (s *statements) update(ctx context.Context, conn *pgx.Conn, version int) error {
	if s.blockSize == 0 {
		var bs string
		if err := conn.QueryRow(ctx, "SHOW block_size").Scan(&bs); err != nil {
			return fmt.Errorf("cannot read block_size: %w", err)
		}
		var n float64
		if _, err := fmt.Sscan(bs, &n); err != nil || n <= 0 {
			return fmt.Errorf("cannot parse block_size %q", bs)
		}
		s.blockSize = n
	}
	if version < 130000 {
		return fmt.Errorf("PostgreSQL %d is not supported (13 or later)", version/10000)
	}
	// track_planning can be changed with a reload; the setting is unknown
	// (NULL) where the extension's library is not loaded.
	const planningSQL = "coalesce(current_setting('pg_stat_statements.track_planning', true), '') = 'on'"
	if version >= 140000 {
		var dealloc int64
		var reset time.Time
		err := conn.QueryRow(ctx, "SELECT dealloc, stats_reset, "+planningSQL+" FROM pg_stat_statements_info").Scan(&dealloc, &reset, &s.planning)
		if err != nil {
			return statementsError(err)
		}
		if !s.lastReset.IsZero() && !reset.Equal(s.lastReset) {
			// pg_stat_statements_reset(): every entry starts again.
			clear(s.last)
		}
		s.lastReset, s.dealloc = reset, float64(dealloc)
	} else if err := conn.QueryRow(ctx, "SELECT "+planningSQL).Scan(&s.planning); err != nil {
		return statementsError(err)
	}

	toplevel, wal := "true", "0::numeric"
	if version >= 140000 {
		toplevel = "s.toplevel"
	}
	if version >= 130000 {
		wal = "s.wal_bytes"
	}
	q := `SELECT s.userid::oid::int8, s.dbid::oid::int8, d.datname, s.queryid, ` + toplevel + `,
		s.calls, s.total_exec_time, s.total_plan_time, s.rows, s.shared_blks_hit, s.shared_blks_read, s.temp_blks_written, ` + wal + `::float8
		FROM pg_stat_statements(false) s JOIN pg_database d ON d.oid = s.dbid`
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return statementsError(err)
	}
	var cur []stmtRow
	var noQueryID float64
	for rows.Next() {
		var userid, dbid int64
		var queryid *int64
		var r stmtRow
		var calls, rws, hit, read, temp int64
		if err := rows.Scan(&userid, &dbid, &r.datname, &queryid, &r.key.toplevel, &calls, &r.c.execSec, &r.c.planSec, &rws, &hit, &read, &temp, &r.c.walBytes); err != nil {
			rows.Close()
			return fmt.Errorf("cannot read pg_stat_statements: %w", err)
		}
		if queryid == nil {
			noQueryID++
			continue
		}
		r.key.userid, r.key.dbid, r.key.queryid = uint32(userid), uint32(dbid), *queryid
		r.c.calls, r.c.rows, r.c.blksHit, r.c.blksRead = float64(calls), float64(rws), float64(hit), float64(read)
		r.c.tempBytes = float64(temp) * s.blockSize
		r.c.execSec /= 1000 // milliseconds in pg_stat_statements
		r.c.planSec /= 1000
		cur = append(cur, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read pg_stat_statements: %w", err)
	}
	s.noQueryID, s.entries = noQueryID, len(cur)

	if err := s.fetchTexts(ctx, conn, cur); err != nil {
		return err
	}

	// Deltas per (datname, query_fp), kept for every fingerprint (bounded
	// like the text cache); the series exposed are the top-K by recent time.
	changed := map[fpKey]stmtCounters{}
	seen := make(map[stmtKey]stmtCounters, len(cur))
	for _, r := range cur {
		seen[r.key] = r.c
		prev, ok := s.last[r.key]
		d := r.c
		if ok && !r.c.decreased(prev) {
			d = r.c.minus(prev)
		}
		if ok && d == (stmtCounters{}) {
			continue
		}
		fp, known := s.fps[r.key.queryid]
		if !known {
			fp = "other" // its text could not be read
		}
		k := fpKey{r.datname, fp}
		c := changed[k]
		c.add(d)
		changed[k] = c
	}
	s.last = seen
	s.rank(changed)
	return nil
}

// rank folds this scrape's deltas into the totals and picks the series to
// expose: the topQueries fingerprints by recent time (time decays by half
// every scrape). A fingerprint that enters shows its whole total; one that
// leaves disappears; "other" adds up the deltas of those outside at the
// time, so every exposed counter only grows.
func (s *statements) rank(changed map[fpKey]stmtCounters) {
	if len(s.all)+len(changed) > s.textCache {
		// Bounded memory: forget fingerprints outside the top.
		for k := range s.all {
			if !s.shown[k] {
				delete(s.all, k)
				delete(s.score, k)
			}
		}
	}
	for k := range s.score {
		s.score[k] /= 2
	}
	for k, d := range changed {
		if k.fp == "other" {
			continue
		}
		t := s.all[k]
		if t == nil {
			t = &stmtCounters{}
			s.all[k] = t
		}
		t.add(d)
		s.score[k] += d.execSec + d.planSec + d.calls*1e-9 // calls break ties between idle ones
	}
	type scored struct {
		k     fpKey
		score float64
	}
	keys := make([]scored, 0, len(s.score))
	for k, v := range s.score {
		keys = append(keys, scored{k, v})
	}
	slices.SortFunc(keys, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(a.k.fp, b.k.fp)
	})
	shown := make(map[fpKey]bool, min(s.topQueries, len(keys)))
	for i, k := range keys {
		if i >= s.topQueries {
			break
		}
		shown[k.k] = true
	}
	s.shown = shown
	for k, d := range changed {
		if k.fp == "other" || !shown[k] {
			t := s.other[k.datname]
			if t == nil {
				t = &stmtCounters{}
				s.other[k.datname] = t
			}
			t.add(d)
		}
	}
}

// queryTexts adds the normalised texts of the fingerprints with series of
// their own to texts (query_fp → text).
func (s *statements) queryTexts(texts map[string]string) {
	for k := range s.shown {
		texts[k.fp] = s.norm[k.fp]
	}
}

// fetchTexts fingerprints the texts of queryids not seen before. The
// query with texts reads pg_stat_statements' whole text file, so it runs
// only when there are new queryids, and asks for those only.
func (s *statements) fetchTexts(ctx context.Context, conn *pgx.Conn, cur []stmtRow) error {
	var ids []int64
	want := map[int64]bool{}
	for _, r := range cur {
		if _, ok := s.fps[r.key.queryid]; !ok && !want[r.key.queryid] {
			want[r.key.queryid] = true
			ids = append(ids, r.key.queryid)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if len(s.fps)+len(ids) > s.textCache {
		// Bounded memory: start over; the texts are read again as needed.
		clear(s.fps)
		clear(s.norm)
	}
	rows, err := conn.Query(ctx, "SELECT DISTINCT ON (queryid) queryid, query FROM pg_stat_statements(true) WHERE queryid = ANY($1)", ids)
	if err != nil {
		return statementsError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var text *string
		if err := rows.Scan(&id, &text); err != nil {
			return fmt.Errorf("cannot read pg_stat_statements texts: %w", err)
		}
		if text == nil {
			continue // "<insufficient privilege>" rows have no text
		}
		r := sqlfp.Fingerprint(*text)
		s.fps[id] = r.Fingerprint
		if _, ok := s.norm[r.Fingerprint]; !ok {
			s.norm[r.Fingerprint] = r.Normalized
		}
	}
	return rows.Err()
}

// Metrics of the statements collector; server is the DSN's label.
var (
	descCalls     = prometheus.NewDesc("bitville_pg_statement_calls_total", "Statement executions (pg_stat_statements calls), by query fingerprint.", []string{"server", "datname", "query_fp"}, nil)
	descSeconds   = prometheus.NewDesc("bitville_pg_statement_seconds_total", "Statement execution time (total_exec_time), by query fingerprint.", []string{"server", "datname", "query_fp"}, nil)
	descPlanning  = prometheus.NewDesc("bitville_pg_statement_planning_seconds_total", "Statement planning time (total_plan_time), by query fingerprint; only while pg_stat_statements.track_planning is on.", []string{"server", "datname", "query_fp"}, nil)
	descRows      = prometheus.NewDesc("bitville_pg_statement_rows_total", "Rows retrieved or affected by statements.", []string{"server", "datname", "query_fp"}, nil)
	descBlksHit   = prometheus.NewDesc("bitville_pg_statement_shared_blocks_hit_total", "Shared buffer hits of statements.", []string{"server", "datname", "query_fp"}, nil)
	descBlksRead  = prometheus.NewDesc("bitville_pg_statement_shared_blocks_read_total", "Shared blocks statements read from the OS.", []string{"server", "datname", "query_fp"}, nil)
	descTempBytes = prometheus.NewDesc("bitville_pg_statement_temp_bytes_total", "Temporary file bytes statements wrote.", []string{"server", "datname", "query_fp"}, nil)
	descWALBytes  = prometheus.NewDesc("bitville_pg_statement_wal_bytes_total", "WAL bytes statements generated.", []string{"server", "datname", "query_fp"}, nil)
	descQueryInfo = prometheus.NewDesc("bitville_sql_query_info", "Normalised text of a query fingerprint (value is always 1).", []string{"query_fp", "query"}, nil)
	descEntries   = prometheus.NewDesc("bitville_pg_statements_entries", "Entries pg_stat_statements held at the last scrape.", []string{"server"}, nil)
	descDealloc   = prometheus.NewDesc("bitville_pg_statements_deallocations_total", "Entries pg_stat_statements evicted for room (pg_stat_statements_info.dealloc; PostgreSQL 14+). Raise pg_stat_statements.max when it grows.", []string{"server"}, nil)
	descNoQueryID = prometheus.NewDesc("bitville_pg_statements_hidden_entries", "Entries without a queryid at the last scrape: other roles' statements, hidden without pg_read_all_stats.", []string{"server"}, nil)
)

// collect emits the totals.
func (s *statements) collect(server string, ch chan<- prometheus.Metric) {
	if s.labelServer != server {
		s.labels, s.labelServer = nil, server
	}
	labels := make(map[fpKey][]*dto.LabelPair, len(s.shown)+len(s.other))
	emit := func(k fpKey, t *stmtCounters) {
		l := s.labels[k]
		if l == nil {
			l = statementLabels(server, k)
		}
		labels[k] = l
		s.emitStatement(ch, l, t)
	}
	for k := range s.shown {
		emit(k, s.all[k])
	}
	for db, t := range s.other {
		emit(fpKey{db, "other"}, t)
	}
	s.labels = labels // only those still exposed
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(s.entries), server)
	ch <- prometheus.MustNewConstMetric(descDealloc, prometheus.CounterValue, s.dealloc, server)
	ch <- prometheus.MustNewConstMetric(descNoQueryID, prometheus.GaugeValue, s.noQueryID, server)
}

// statementLabels are the label pairs of a statement series, sorted by
// name as the exposition wants them.
func statementLabels(server string, k fpKey) []*dto.LabelPair {
	pair := func(n, v string) *dto.LabelPair { return &dto.LabelPair{Name: &n, Value: &v} }
	return []*dto.LabelPair{pair("datname", k.datname), pair("query_fp", k.fp), pair("server", server)}
}

// emitStatement sends the counters of one (datname, query_fp); planning
// time only while pg_stat_statements tracks it.
func (s *statements) emitStatement(ch chan<- prometheus.Metric, labels []*dto.LabelPair, t *stmtCounters) {
	n := 7
	if s.planning {
		n = 8
	}
	ms := make([]counterMetric, n)
	ms[0] = counterMetric{descCalls, labels, t.calls}
	ms[1] = counterMetric{descSeconds, labels, t.execSec}
	ms[2] = counterMetric{descRows, labels, t.rows}
	ms[3] = counterMetric{descBlksHit, labels, t.blksHit}
	ms[4] = counterMetric{descBlksRead, labels, t.blksRead}
	ms[5] = counterMetric{descTempBytes, labels, t.tempBytes}
	ms[6] = counterMetric{descWALBytes, labels, t.walBytes}
	if s.planning {
		ms[7] = counterMetric{descPlanning, labels, t.planSec}
	}
	for i := range ms {
		ch <- &ms[i]
	}
}

// counterMetric is a counter series whose label pairs are shared between
// scrapes: the ~1,600 statement series would otherwise have their label
// values validated, paired and sorted again at every scrape
// (prometheus.NewConstMetric), which was most of the exporter's own CPU.
// The pairs are never changed once built.
type counterMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
}

func (m *counterMetric) Desc() *prometheus.Desc { return m.desc }

func (m *counterMetric) Write(out *dto.Metric) error {
	v := m.value
	out.Label = m.labels
	out.Counter = &dto.Counter{Value: &v}
	return nil
}

// statementsError explains a missing extension.
func statementsError(err error) error {
	return fmt.Errorf("cannot read pg_stat_statements (it needs shared_preload_libraries = pg_stat_statements and CREATE EXTENSION pg_stat_statements in the database the DSN names; the role needs pg_read_all_stats or pg_monitor): %w", err)
}
