package pgexporter

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The autovacuum collector: autovacuum workers running by database and the
// autovacuum_max_workers setting.

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
