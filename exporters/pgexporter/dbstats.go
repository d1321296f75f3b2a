package pgexporter

import "time"

// Server statistics: connections, per-database counters, checkpointer and
// background writer, replication and autovacuum, one collector a file
// (connections.go, database.go, checkpointer.go, replication.go,
// autovacuum.go). One query per collector and scrape; counters are the
// server's own cumulative values (const metrics), gauges are dropped when
// their collector fails.

// The server statistics collectors are registered here, together, so that
// they keep their place in the scrape's order (after activity.go's, before
// locks.go's) whatever their files are called.
func init() {
	collectorFactories = append(collectorFactories,
		func(Config) collector { return &dbsConnections{} },
		func(Config) collector { return &dbsDatabase{sizeEvery: dbsSizeEvery, now: time.Now} },
		func(Config) collector { return &dbsCheckpointer{} },
		func(Config) collector { return &dbsReplication{} },
		func(Config) collector { return &dbsAutovacuum{} },
	)
}

// Label names shared by the server statistics' metrics.
var (
	dbsServer   = []string{"server"}
	dbsServerDB = []string{"server", "datname"}
)
