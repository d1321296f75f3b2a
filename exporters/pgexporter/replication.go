package pgexporter

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The replication collector: whether the server is a standby, its replay
// delay, and the lag of the standbys connected to it (pg_stat_replication).

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
