package pgexporter

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The database collector: pg_stat_database's counters of each database and
// its size (pg_database_size, refreshed every dbsSizeEvery).

// dbsSizeEvery is how often pg_database_size() runs per server: it stats
// every file of every database, too much for every scrape of a big cluster.
const dbsSizeEvery = 5 * time.Minute

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
