package pgexporter

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The connections collector: client backends by database and state
// (pg_stat_activity) and the connection settings.

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
