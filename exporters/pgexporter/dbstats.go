package pgexporter

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Server statistics: connections, per-database counters, checkpointer and
// background writer, replication and autovacuum. One query per collector
// and scrape; counters are the server's own cumulative values (const
// metrics), gauges are dropped when their collector fails.

func init() {
	collectorFactories = append(collectorFactories,
		func(Config) collector { return &dbsConnections{} },
		func(Config) collector { return &dbsDatabase{sizeEvery: dbsSizeEvery, now: time.Now} },
		func(Config) collector { return &dbsCheckpointer{} },
		func(Config) collector { return &dbsReplication{} },
		func(Config) collector { return &dbsAutovacuum{} },
	)
}

// dbsSizeEvery is how often pg_database_size() runs per server: it stats
// every file of every database, too much for every scrape of a big cluster.
const dbsSizeEvery = 5 * time.Minute

var (
	dbsServer   = []string{"server"}
	dbsServerDB = []string{"server", "datname"}
)

// ---- connections ----------------------------------------------------------

var (
	descDBSConnections = prometheus.NewDesc("bitville_pg_connections", "Client backends by database and state (pg_stat_activity). Without pg_monitor (or pg_read_all_stats) other roles' sessions show as state=\"hidden\".", []string{"server", "datname", "state"}, nil)
	descDBSMaxConns    = prometheus.NewDesc("bitville_pg_max_connections", "The max_connections setting.", dbsServer, nil)
	descDBSReserved    = prometheus.NewDesc("bitville_pg_superuser_reserved_connections", "The superuser_reserved_connections setting.", dbsServer, nil)
)

type dbsConnKey struct{ datname, state string }

type dbsConnections struct {
	ok            bool
	max, reserved float64
	counts        map[dbsConnKey]float64
}

func (c *dbsConnections) name() string { return "connections" }

const dbsConnectionsQuery = `SELECT current_setting('max_connections')::int8, current_setting('superuser_reserved_connections')::int8, a.datname, a.state, a.n
FROM (SELECT 1) one LEFT JOIN (
	SELECT datname, CASE WHEN backend_type IS NULL THEN 'hidden' ELSE coalesce(state, 'unknown') END AS state, count(*) AS n
	FROM pg_stat_activity
	WHERE backend_type = 'client backend' OR (backend_type IS NULL AND datname IS NOT NULL)
	GROUP BY 1, 2
) a ON true`

func (c *dbsConnections) update(ctx context.Context, conn *pgx.Conn, _ int) error {
	c.ok = false
	rows, err := conn.Query(ctx, dbsConnectionsQuery)
	if err != nil {
		return fmt.Errorf("cannot read pg_stat_activity: %w", err)
	}
	defer rows.Close()
	counts := map[dbsConnKey]float64{}
	var max, reserved int64
	for rows.Next() {
		var datname, state *string
		var n *int64
		if err := rows.Scan(&max, &reserved, &datname, &state, &n); err != nil {
			return fmt.Errorf("cannot read pg_stat_activity: %w", err)
		}
		if state != nil && n != nil {
			k := dbsConnKey{state: *state}
			if datname != nil {
				k.datname = *datname
			}
			counts[k] += float64(*n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read pg_stat_activity: %w", err)
	}
	c.ok, c.max, c.reserved, c.counts = true, float64(max), float64(reserved), counts
	return nil
}

func (c *dbsConnections) collect(server string, ch chan<- prometheus.Metric) {
	if !c.ok {
		return
	}
	for k, n := range c.counts {
		ch <- prometheus.MustNewConstMetric(descDBSConnections, prometheus.GaugeValue, n, server, k.datname, k.state)
	}
	ch <- prometheus.MustNewConstMetric(descDBSMaxConns, prometheus.GaugeValue, c.max, server)
	ch <- prometheus.MustNewConstMetric(descDBSReserved, prometheus.GaugeValue, c.reserved, server)
}

// ---- database -------------------------------------------------------------

// dbsDBCounters are pg_stat_database's counters of one database, in the
// order of the query's columns and of descDBSCounters.
type dbsDBCounters [13]float64

var descDBSCounters = [13]*prometheus.Desc{
	prometheus.NewDesc("bitville_pg_database_commits_total", "Transactions committed (pg_stat_database.xact_commit).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_rollbacks_total", "Transactions rolled back (xact_rollback).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_deadlocks_total", "Deadlocks detected.", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_temp_files_total", "Temporary files created by queries.", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_temp_bytes_total", "Bytes written to temporary files by queries.", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_blocks_read_total", "Blocks read from the OS (blks_read).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_blocks_hit_total", "Blocks found in shared buffers (blks_hit).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_conflicts_total", "Queries cancelled by recovery conflicts (standbys only).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_tuples_returned_total", "Rows returned by sequential scans and index entries read (tup_returned).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_tuples_fetched_total", "Live rows fetched by index scans (tup_fetched).", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_tuples_inserted_total", "Rows inserted.", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_tuples_updated_total", "Rows updated.", dbsServerDB, nil),
	prometheus.NewDesc("bitville_pg_database_tuples_deleted_total", "Rows deleted.", dbsServerDB, nil),
}

var (
	descDBSSize  = prometheus.NewDesc("bitville_pg_database_size_bytes", "Database size (pg_database_size), refreshed at most every 5 minutes.", dbsServerDB, nil)
	descDBSReset = prometheus.NewDesc("bitville_pg_database_stats_reset_timestamp_seconds", "When the database's statistics were last reset (absent if never).", dbsServerDB, nil)
)

type dbsDB struct {
	c     dbsDBCounters
	reset float64 // 0: never reset
}

type dbsDatabase struct {
	sizeEvery time.Duration
	now       func() time.Time
	dbs       map[string]dbsDB
	sizes     map[string]float64 // the last pg_database_size of each database
	sizedAt   time.Time
}

func (d *dbsDatabase) name() string { return "database" }

const dbsDatabaseQuery = `SELECT datname, xact_commit, xact_rollback, deadlocks, temp_files, temp_bytes, blks_read, blks_hit, conflicts,
	tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, extract(epoch FROM stats_reset)::float8,
	CASE WHEN $1::bool AND has_database_privilege(datid, 'CONNECT') THEN pg_database_size(datid) END
FROM pg_stat_database WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1')`

func (d *dbsDatabase) update(ctx context.Context, conn *pgx.Conn, _ int) error {
	now := d.now()
	wantSize := d.sizedAt.IsZero() || now.Sub(d.sizedAt) >= d.sizeEvery
	if wantSize {
		// Also when the query fails (pg_database_size too slow for the
		// statement timeout): the next scrapes run without it, so the
		// counters are not lost along with the sizes.
		d.sizedAt = now
	}
	rows, err := conn.Query(ctx, dbsDatabaseQuery, wantSize)
	if err != nil {
		return fmt.Errorf("cannot read pg_stat_database: %w", err)
	}
	defer rows.Close()
	dbs := map[string]dbsDB{}
	sizes := map[string]float64{}
	for rows.Next() {
		var datname string
		var v [13]int64
		var reset *float64
		var size *int64
		dest := []any{&datname}
		for i := range v {
			dest = append(dest, &v[i])
		}
		dest = append(dest, &reset, &size)
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("cannot read pg_stat_database: %w", err)
		}
		var db dbsDB
		for i := range v {
			db.c[i] = float64(v[i])
		}
		if reset != nil {
			db.reset = *reset
		}
		dbs[datname] = db
		if size != nil {
			sizes[datname] = float64(*size)
		} else if s, ok := d.sizes[datname]; ok && !wantSize {
			sizes[datname] = s // the cached value until the next refresh
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read pg_stat_database: %w", err)
	}
	d.dbs, d.sizes = dbs, sizes
	return nil
}

func (d *dbsDatabase) collect(server string, ch chan<- prometheus.Metric) {
	for name, db := range d.dbs {
		for i, desc := range descDBSCounters {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, db.c[i], server, name)
		}
		if db.reset > 0 {
			ch <- prometheus.MustNewConstMetric(descDBSReset, prometheus.GaugeValue, db.reset, server, name)
		}
	}
	for name, s := range d.sizes {
		ch <- prometheus.MustNewConstMetric(descDBSSize, prometheus.GaugeValue, s, server, name)
	}
}

// ---- checkpointer and background writer -------------------------------------

var (
	descDBSCheckpoints    = prometheus.NewDesc("bitville_pg_checkpoints_total", "Checkpoints performed, by kind: timed (checkpoint_timeout) or requested (CHECKPOINT, max_wal_size, ...).", []string{"server", "kind"}, nil)
	descDBSCkptWrite      = prometheus.NewDesc("bitville_pg_checkpoint_write_seconds_total", "Time checkpoints spent writing files.", dbsServer, nil)
	descDBSCkptSync       = prometheus.NewDesc("bitville_pg_checkpoint_sync_seconds_total", "Time checkpoints spent syncing files to disk.", dbsServer, nil)
	descDBSCkptBuffers    = prometheus.NewDesc("bitville_pg_checkpoint_buffers_written_total", "Buffers written by checkpoints.", dbsServer, nil)
	descDBSBgwClean       = prometheus.NewDesc("bitville_pg_bgwriter_buffers_clean_total", "Buffers written by the background writer.", dbsServer, nil)
	descDBSBgwMaxwritten  = prometheus.NewDesc("bitville_pg_bgwriter_maxwritten_clean_total", "Times the background writer stopped a round for writing too many buffers (bgwriter_lru_maxpages).", dbsServer, nil)
	descDBSBuffersBackend = prometheus.NewDesc("bitville_pg_buffers_backend_written_total", "Buffers written directly by backends (PostgreSQL 16 and older; 17 moved it to pg_stat_io).", dbsServer, nil)
	descDBSBuffersAlloc   = prometheus.NewDesc("bitville_pg_buffers_allocated_total", "Buffers allocated.", dbsServer, nil)
)

type dbsCheckpointer struct {
	ok                                           bool
	timed, requested, writeSec, syncSec, ckptBuf float64
	clean, maxwritten, alloc                     float64
	backend                                      *float64 // nil on PostgreSQL 17+
}

func (c *dbsCheckpointer) name() string { return "checkpointer" }

// dbsCheckpointerQuery returns the query for server_version_num version: the
// same columns in the same order whatever the version.
func dbsCheckpointerQuery(version int) string {
	if version >= 170000 {
		return `SELECT c.num_timed, c.num_requested, c.write_time, c.sync_time, c.buffers_written,
	b.buffers_clean, b.maxwritten_clean, NULL::int8, b.buffers_alloc
FROM pg_stat_checkpointer c CROSS JOIN pg_stat_bgwriter b`
	}
	return `SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint,
	buffers_clean, maxwritten_clean, buffers_backend, buffers_alloc
FROM pg_stat_bgwriter`
}

func (c *dbsCheckpointer) update(ctx context.Context, conn *pgx.Conn, version int) error {
	c.ok = false
	var timed, req, ckptBuf, clean, maxw, alloc int64
	var backend *int64
	var writeMS, syncMS float64
	err := conn.QueryRow(ctx, dbsCheckpointerQuery(version)).Scan(&timed, &req, &writeMS, &syncMS, &ckptBuf, &clean, &maxw, &backend, &alloc)
	if err != nil {
		return fmt.Errorf("cannot read the checkpointer statistics: %w", err)
	}
	c.timed, c.requested, c.writeSec, c.syncSec, c.ckptBuf = float64(timed), float64(req), writeMS/1000, syncMS/1000, float64(ckptBuf)
	c.clean, c.maxwritten, c.alloc = float64(clean), float64(maxw), float64(alloc)
	c.backend = nil
	if backend != nil {
		b := float64(*backend)
		c.backend = &b
	}
	c.ok = true
	return nil
}

func (c *dbsCheckpointer) collect(server string, ch chan<- prometheus.Metric) {
	if !c.ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(descDBSCheckpoints, prometheus.CounterValue, c.timed, server, "timed")
	ch <- prometheus.MustNewConstMetric(descDBSCheckpoints, prometheus.CounterValue, c.requested, server, "requested")
	ch <- prometheus.MustNewConstMetric(descDBSCkptWrite, prometheus.CounterValue, c.writeSec, server)
	ch <- prometheus.MustNewConstMetric(descDBSCkptSync, prometheus.CounterValue, c.syncSec, server)
	ch <- prometheus.MustNewConstMetric(descDBSCkptBuffers, prometheus.CounterValue, c.ckptBuf, server)
	ch <- prometheus.MustNewConstMetric(descDBSBgwClean, prometheus.CounterValue, c.clean, server)
	ch <- prometheus.MustNewConstMetric(descDBSBgwMaxwritten, prometheus.CounterValue, c.maxwritten, server)
	ch <- prometheus.MustNewConstMetric(descDBSBuffersAlloc, prometheus.CounterValue, c.alloc, server)
	if c.backend != nil {
		ch <- prometheus.MustNewConstMetric(descDBSBuffersBackend, prometheus.CounterValue, *c.backend, server)
	}
}

// ---- replication --------------------------------------------------------------

var (
	descDBSInRecovery  = prometheus.NewDesc("bitville_pg_in_recovery", "Whether the server is a standby (1) or a primary (0).", dbsServer, nil)
	descDBSReplayDelay = prometheus.NewDesc("bitville_pg_standby_replay_delay_seconds", "On a standby: now() - pg_last_xact_replay_timestamp(); grows when the primary is idle too.", dbsServer, nil)
	descDBSLagSeconds  = prometheus.NewDesc("bitville_pg_replication_lag_seconds", "Replay lag of each connected standby (pg_stat_replication.replay_lag; 0 when caught up and idle).", []string{"server", "application_name", "client_addr"}, nil)
	descDBSLagBytes    = prometheus.NewDesc("bitville_pg_replication_lag_bytes", "WAL bytes each connected standby has yet to replay.", []string{"server", "application_name", "client_addr"}, nil)
)

type dbsReplica struct{ app, addr string }

type dbsReplication struct {
	ok         bool
	inRecovery bool
	delay      *float64
	lagSec     map[dbsReplica]float64
	lagBytes   map[dbsReplica]float64
}

func (r *dbsReplication) name() string { return "replication" }

// One row even without replicas (the LEFT JOIN); on a standby the lag of
// cascaded standbys is measured from the replayed position.
const dbsReplicationQuery = `SELECT pg_is_in_recovery(),
	CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
	r.application_name, r.client_addr::text, extract(epoch FROM r.replay_lag)::float8,
	pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, r.replay_lsn)::float8,
	r.pid IS NOT NULL
FROM (SELECT 1) one LEFT JOIN pg_stat_replication r ON true`

func (r *dbsReplication) update(ctx context.Context, conn *pgx.Conn, _ int) error {
	r.ok = false
	rows, err := conn.Query(ctx, dbsReplicationQuery)
	if err != nil {
		return fmt.Errorf("cannot read pg_stat_replication: %w", err)
	}
	defer rows.Close()
	lagSec, lagBytes := map[dbsReplica]float64{}, map[dbsReplica]float64{}
	var inRecovery bool
	var delay *float64
	for rows.Next() {
		var app, addr *string
		var lag, bytes *float64
		var present bool
		if err := rows.Scan(&inRecovery, &delay, &app, &addr, &lag, &bytes, &present); err != nil {
			return fmt.Errorf("cannot read pg_stat_replication: %w", err)
		}
		if !present {
			continue
		}
		k := dbsReplica{"", "local"} // client_addr is NULL over a Unix socket
		if app != nil {
			k.app = *app
		}
		if addr != nil {
			k.addr = *addr
		}
		// Several standbys may share a name and address: keep the worst.
		if bytes != nil {
			if old, ok := lagBytes[k]; !ok || *bytes > old {
				lagBytes[k] = *bytes
			}
		}
		l := lag
		if l == nil && bytes != nil && *bytes == 0 {
			zero := 0.0
			l = &zero // replay_lag is NULL once a standby is caught up and idle
		}
		if l != nil {
			if old, ok := lagSec[k]; !ok || *l > old {
				lagSec[k] = *l
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read pg_stat_replication: %w", err)
	}
	r.ok, r.inRecovery, r.delay, r.lagSec, r.lagBytes = true, inRecovery, delay, lagSec, lagBytes
	return nil
}

func (r *dbsReplication) collect(server string, ch chan<- prometheus.Metric) {
	if !r.ok {
		return
	}
	rec := 0.0
	if r.inRecovery {
		rec = 1
	}
	ch <- prometheus.MustNewConstMetric(descDBSInRecovery, prometheus.GaugeValue, rec, server)
	if r.inRecovery && r.delay != nil {
		ch <- prometheus.MustNewConstMetric(descDBSReplayDelay, prometheus.GaugeValue, *r.delay, server)
	}
	for k, v := range r.lagSec {
		ch <- prometheus.MustNewConstMetric(descDBSLagSeconds, prometheus.GaugeValue, v, server, k.app, k.addr)
	}
	for k, v := range r.lagBytes {
		ch <- prometheus.MustNewConstMetric(descDBSLagBytes, prometheus.GaugeValue, v, server, k.app, k.addr)
	}
}

// ---- autovacuum ---------------------------------------------------------------

var (
	descDBSAVWorkers = prometheus.NewDesc("bitville_pg_autovacuum_workers", "Autovacuum workers running, by database (needs pg_monitor to see them).", dbsServerDB, nil)
	descDBSAVMax     = prometheus.NewDesc("bitville_pg_autovacuum_max_workers", "The autovacuum_max_workers setting.", dbsServer, nil)
)

type dbsAutovacuum struct {
	ok      bool
	max     float64
	workers map[string]float64
}

func (a *dbsAutovacuum) name() string { return "autovacuum" }

const dbsAutovacuumQuery = `SELECT current_setting('autovacuum_max_workers')::int8, a.datname, a.n
FROM (SELECT 1) one LEFT JOIN (
	SELECT coalesce(datname, '') AS datname, count(*) AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' GROUP BY 1
) a ON true`

func (a *dbsAutovacuum) update(ctx context.Context, conn *pgx.Conn, _ int) error {
	a.ok = false
	rows, err := conn.Query(ctx, dbsAutovacuumQuery)
	if err != nil {
		return fmt.Errorf("cannot read the autovacuum workers: %w", err)
	}
	defer rows.Close()
	workers := map[string]float64{}
	var max int64
	for rows.Next() {
		var datname *string
		var n *int64
		if err := rows.Scan(&max, &datname, &n); err != nil {
			return fmt.Errorf("cannot read the autovacuum workers: %w", err)
		}
		if datname != nil && n != nil {
			workers[*datname] += float64(*n)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot read the autovacuum workers: %w", err)
	}
	a.ok, a.max, a.workers = true, float64(max), workers
	return nil
}

func (a *dbsAutovacuum) collect(server string, ch chan<- prometheus.Metric) {
	if !a.ok {
		return
	}
	for d, n := range a.workers {
		ch <- prometheus.MustNewConstMetric(descDBSAVWorkers, prometheus.GaugeValue, n, server, d)
	}
	ch <- prometheus.MustNewConstMetric(descDBSAVMax, prometheus.GaugeValue, a.max, server)
}
