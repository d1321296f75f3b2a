package pgexporter

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// The checkpointer collector: the checkpointer's and the background
// writer's counters (pg_stat_checkpointer from PostgreSQL 17, pg_stat_bgwriter).

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
