// Package phpagent is the per-host daemon behind `bitville-apm agent`: it
// receives the PHP agent's datagrams (internal/protocol), keeps the table of
// requests in flight, and turns finished requests into the per-endpoint,
// per-function and per-query metrics of the metric contract in DESIGN.md.
//
// The pieces, one file each: server.go reads the socket, inflight.go keeps
// started-but-not-finished requests, aggregate.go owns the series and their
// limits, selfmetrics.go counts what the daemon itself does, events.go holds
// abandoned and long-running requests for the raw-trace sink (and takes
// php-fpm's events from exporters/fpm, which watches php-fpm itself), http.go
// serves them.
package phpagent

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/bitville/bitville-apm/exporters/fpm"
)

// Config is the validated configuration of the agent daemon.
type Config struct {
	Socket        string        // path of the unix datagram socket
	SocketMode    fs.FileMode   // permission bits of the socket file
	SocketGroup   string        // group name or numeric gid that owns the socket; "" keeps the daemon's
	Readers       int           // goroutines reading the socket
	ReceiveBuffer int           // SO_RCVBUF in bytes
	MinQueueLen   int           // raise net.unix.max_dgram_qlen to this when lower and permitted; 0 leaves it
	ReadPause     time.Duration // least time between two drains of the socket; 0 reads each datagram as it comes

	ListenAddress string // HTTP address for /metrics

	LongRequestThreshold time.Duration // a request running longer is "long running"
	CheckPIDs            bool          // end in-flight requests whose worker pid is gone
	InflightMaxAge       time.Duration // an in-flight request silent for longer is abandoned
	InflightMax          int           // most requests tracked in flight
	SweepInterval        time.Duration // how often the in-flight table is checked

	SeriesTTL     time.Duration // series idle for longer are removed
	SQLCacheSize  int           // fingerprint cache entries
	RankInterval  time.Duration // how often the top-K functions and queries are re-ranked
	EventsBuffer  int           // recent events kept for /api/v1/events
	SpoolDir      string        // the PHP agents' spool, replayed at start; "" = none
	NativeBuckets bool          // expose native histograms beside the classic buckets

	FPM fpm.Config // php-fpm itself: status pages and slowlogs (exporters/fpm)

	Limits Limits
}

// Limits bound the label values the agent creates, per project.
type Limits struct {
	Projects        int // distinct projects
	Endpoints       int // endpoints per project
	Functions       int // functions with a self-time counter, per project
	Queries         int // query fingerprints per project
	EndpointQueries int // (endpoint, query) pairs per project
	// EndpointFunctions bounds the (endpoint, function) pairs per project
	// of bitville_php_endpoint_function_self_seconds_total.
	EndpointFunctions int
	TopFunctions      int // functions that also get a duration histogram, per project
	TopQueries        int // queries that also get a duration histogram, per project
}

// DefaultConfig returns the defaults documented in `bitville-apm agent --help`
// and docs/agent.md.
func DefaultConfig() Config {
	return Config{
		Socket:               "/run/bitville-apm/agent.sock",
		SocketMode:           0o660,
		Readers:              2,
		ReceiveBuffer:        8 << 20,
		MinQueueLen:          1024,
		ReadPause:            20 * time.Millisecond,
		ListenAddress:        ":19100",
		LongRequestThreshold: 10 * time.Second,
		CheckPIDs:            true,
		InflightMaxAge:       time.Hour,
		InflightMax:          65536,
		SweepInterval:        time.Second,
		SeriesTTL:            30 * time.Minute,
		SQLCacheSize:         20000,
		RankInterval:         30 * time.Second,
		EventsBuffer:         1000,
		FPM:                  fpm.DefaultConfig(),
		Limits: Limits{
			Projects:          20,
			Endpoints:         500,
			Functions:         2000,
			Queries:           1000,
			EndpointQueries:   10000,
			EndpointFunctions: 10000,
			TopFunctions:      100,
			TopQueries:        200,
		},
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Socket != "", "agent.socket must not be empty")
	check(len(c.Socket) < 108, "agent.socket %q is longer than the 107 bytes a unix socket path may have", c.Socket)
	check(c.SocketMode&^0o777 == 0, "agent.socket-mode %o has bits beyond 0777", c.SocketMode)
	check(c.Readers >= 1 && c.Readers <= 64, "agent.readers %d must be between 1 and 64", c.Readers)
	check(c.MinQueueLen >= 0 && c.MinQueueLen <= 1<<20, "agent.min-queue-length %d must be between 0 and 1048576", c.MinQueueLen)
	check(c.ReadPause >= 0 && c.ReadPause <= time.Second, "agent.read-pause %s must be between 0 and 1s", c.ReadPause)
	check(c.ReceiveBuffer >= 64<<10 && c.ReceiveBuffer <= 1<<30, "agent.receive-buffer %d must be between 64 KiB and 1 GiB", c.ReceiveBuffer)
	check(c.ListenAddress != "", "web.listen-address must not be empty")
	check(c.LongRequestThreshold > 0, "agent.long-request-threshold must be positive")
	check(c.InflightMaxAge >= time.Second, "agent.inflight-max-age must be at least 1s")
	check(c.InflightMax >= 1, "agent.inflight-max must be at least 1")
	check(c.SweepInterval >= 10*time.Millisecond, "agent.sweep-interval must be at least 10ms")
	check(c.SeriesTTL >= time.Second, "agent.series-ttl must be at least 1s")
	check(c.SQLCacheSize >= 16, "agent.sql-cache-size must be at least 16")
	check(c.RankInterval >= 100*time.Millisecond, "agent.rank-interval must be at least 100ms")
	check(c.EventsBuffer >= 1, "agent.events-buffer must be at least 1")
	if err := c.FPM.Validate(); err != nil {
		errs = append(errs, err)
	}
	l := c.Limits
	check(l.Projects >= 1, "limits.projects must be at least 1")
	check(l.Endpoints >= 1, "limits.endpoints must be at least 1")
	check(l.Functions >= 1, "limits.functions must be at least 1")
	check(l.Queries >= 1, "limits.queries must be at least 1")
	check(l.EndpointQueries >= 1, "limits.endpoint-queries must be at least 1")
	check(l.EndpointFunctions >= 1, "limits.endpoint-functions must be at least 1")
	check(l.TopFunctions >= 0 && l.TopFunctions <= l.Functions, "limits.top-functions %d must be between 0 and limits.functions %d", l.TopFunctions, l.Functions)
	check(l.TopQueries >= 0 && l.TopQueries <= l.Queries, "limits.top-queries %d must be between 0 and limits.queries %d", l.TopQueries, l.Queries)
	return errors.Join(errs...)
}
