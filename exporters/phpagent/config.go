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
// serves them. traces.go turns finished, abandoned and php-fpm's requests
// into raw-trace events for a rawtrace.Emitter.
package phpagent

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/alecthomas/units"

	"github.com/bitville/bitville-apm/exporters/fpm"
	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/protocol"
)

// Config is the configuration of the agent daemon. Its fields are the
// agent's flags: name, default and help are written once, in the tags (the
// command embeds Config, and DefaultConfig reads the defaults from the
// tags). Validate checks it as a whole.
type Config struct {
	Socket               string           `name:"agent.socket" default:"/run/bitville-apm/agent.sock" placeholder:"PATH" help:"Unix datagram socket the PHP agent sends to. A stale socket file is replaced."`
	SocketMode           FileMode         `name:"agent.socket-mode" default:"0660" placeholder:"OCTAL" help:"Permission bits of the socket file; the PHP workers' user needs write access."`
	SocketGroup          string           `name:"agent.socket-group" placeholder:"GROUP" help:"Group (name or gid) to own the socket file and the spool, e.g. the php-fpm pool's group. Empty keeps the daemon's group."`
	Readers              int              `name:"agent.readers" default:"2" help:"Goroutines reading the socket."`
	ReceiveBuffer        units.Base2Bytes `name:"agent.receive-buffer" default:"8MiB" help:"Socket receive buffer (SO_RCVBUF, forced past net.core.rmem_max when running as root). Absorbs bursts while readers are busy."`
	MinQueueLen          int              `name:"agent.min-queue-length" default:"1024" help:"Raise net.unix.max_dgram_qlen to at least this before opening the socket, when running as root. The kernel queues at most that many datagrams per socket whatever the receive buffer (default 10): below it the PHP workers drop messages as soon as the daemon falls behind. 0 leaves it alone."`
	ReadPause            time.Duration    `name:"agent.read-pause" default:"20ms" help:"Least time between two drains of the socket: each drain reads every queued datagram, so a busy host wakes the daemon about 50 times a second instead of twice per PHP request. Shortened, or skipped, when the socket's queue or a PHP worker's send buffer could fill meanwhile. 0 reads each datagram as it arrives."`
	LongRequestThreshold time.Duration    `name:"agent.long-request-threshold" default:"10s" help:"A request in flight for longer is counted as long running and reported once as an event with its latest stack."`
	CheckPIDs            bool             `name:"agent.check-pids" default:"true" negatable:"" help:"Abandon in-flight requests whose worker process is gone (killed by request_terminate_timeout, crashed). Disable when PHP runs in another PID namespace."`
	InflightMaxAge       time.Duration    `name:"agent.inflight-max-age" default:"1h" help:"Abandon an in-flight request not heard of (start or progress) for this long."`
	SweepInterval        time.Duration    `name:"agent.sweep-interval" default:"1s" help:"How often in-flight requests are checked for gone workers, age and the long-running threshold."`
	InflightMax          int              `name:"agent.inflight-max" default:"65536" help:"Most requests tracked in flight; beyond it new ones are counted in bitville_agent_inflight_rejected_total."`
	SeriesTTL            time.Duration    `name:"agent.series-ttl" default:"30m" help:"Remove endpoint, function and query series idle for this long."`
	SQLCacheSize         int              `name:"agent.sql-cache-size" default:"20000" help:"SQL texts whose fingerprint is cached."`
	RankInterval         time.Duration    `name:"agent.rank-interval" default:"30s" help:"How often the top functions and queries (those with histograms) are re-ranked by recent time."`
	SpoolDir             string           `name:"agent.spool-dir" placeholder:"DIR" help:"The PHP agents' spool (their spool_dir): end messages the socket refused, taken in while running and at start, then removed. Empty: beside the socket, its name less .sock plus .spool (/run/bitville-apm/agent.spool), which the PHP agent finds by itself; the daemon creates it for the socket's group. off: no spool."`
	SpoolInterval        time.Duration    `name:"agent.spool-interval" default:"1s" help:"How often the spool is taken in."`
	SpoolMaxAge          time.Duration    `name:"agent.spool-max-age" default:"1h" help:"Spooled messages older than this are dropped (counted in bitville_agent_spool_files_total{result=\"expired\"}); 0 keeps them."`
	SpoolMaxBytes        units.Base2Bytes `name:"agent.spool-max-bytes" default:"64MiB" help:"Past this size the oldest spooled messages are dropped (result=\"evicted\"). The PHP agents stop at their own spool_max_bytes, by default the same."`
	EventsBuffer         int              `name:"agent.events-buffer" default:"1000" help:"Recent abandoned and long-running request events kept for /api/v1/events."`
	NativeBuckets        bool             `name:"metrics.native-histograms" help:"Also expose native histograms (bucket factor 1.1, at most 100 buckets) beside the classic buckets; costs about 7% more per message."`
	ListenAddress        string           `name:"web.listen-address" default:":19100" placeholder:"ADDR" help:"Address for /, /metrics, /healthz, /readyz and /api/v1/."`

	Limits Limits     `embed:""`
	Traces Traces     `embed:""` // which requests become raw traces (traces.go)
	FPM    fpm.Config `embed:""` // php-fpm itself: status pages and slowlogs (exporters/fpm)
}

// Traces choose the requests shipped as raw traces (docs/raw-traces.md).
// Where and how they are shipped is rawtrace.Config's, beside these.
type Traces struct {
	SlowThreshold    time.Duration `name:"events.slow-threshold" default:"1s" help:"A request whose wall time reaches this is shipped as a slow request event, with its SQL, stacks and errors. Keep the PHP agents' slow_threshold_ms no higher: faster requests leave their call sites and stacks out."`
	SampleRate       float64       `name:"events.sample-rate" default:"0" help:"Fraction (0 to 1) of the other requests, neither failed, slow nor forced, shipped as sampled request events, drawn at random; with call sites and stacks only from PHP agents with slow_threshold_ms=0."`
	ProfileFunctions int           `name:"events.profile-functions" default:"300" help:"Most functions of a profile event (a request profiled by tideways or xhprof), the heaviest by self time; the rest are counted in functions_dropped."`
}

// Limits bound the label values the agent creates, per project.
type Limits struct {
	Projects          int `name:"limits.projects" default:"20" help:"Distinct projects; more are counted as project=\"other\"."`
	Endpoints         int `name:"limits.endpoints" default:"500" help:"Endpoints per project; more are counted as endpoint=\"other\"."`
	Functions         int `name:"limits.functions" default:"2000" help:"Functions with a self-time counter per project; more are counted as function=\"other\"."`
	Queries           int `name:"limits.queries" default:"1000" help:"Query fingerprints per project; more are counted as query_fp=\"other\"."`
	EndpointQueries   int `name:"limits.endpoint-queries" default:"10000" help:"(endpoint, query) pairs per project for bitville_php_sql_seconds_total; more are counted as query_fp=\"other\"."`
	EndpointFunctions int `name:"limits.endpoint-functions" default:"10000" help:"(endpoint, function) pairs per project for bitville_php_endpoint_function_self_seconds_total (each request's 10 heaviest functions); more are counted as function=\"other\"."`
	WallFunctions     int `name:"limits.wall-functions" default:"5000" help:"(function, caller) pairs per project for bitville_php_function_wall_seconds_total; more are counted as function=\"other\", caller=\"other\"."`
	TopFunctions      int `name:"limits.top-functions" default:"100" help:"Functions per project that also get a duration histogram (the heaviest by recent self time)."`
	TopQueries        int `name:"limits.top-queries" default:"200" help:"Queries per project that also get a duration histogram (the heaviest by recent time)."`
}

// DefaultConfig returns the defaults of the agent's flags (the tags of
// Config).
func DefaultConfig() Config {
	var c Config
	flagdefaults.Must(&c)
	return c
}

// FileMode is a file's permission bits, written in octal (0660).
type FileMode fs.FileMode

// UnmarshalText parses an octal mode.
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil {
		return fmt.Errorf("cannot parse %q as an octal file mode: %w", b, err)
	}
	*m = FileMode(v)
	return nil
}

// String is the mode in octal.
func (m FileMode) String() string { return fmt.Sprintf("%#o", uint32(m)) }

// SpoolPath is the spool directory in use, "" when the spool is off.
func (c Config) SpoolPath() string {
	switch c.SpoolDir {
	case SpoolOff:
		return ""
	case "":
		return DerivedSpoolDir(c.Socket)
	}
	return c.SpoolDir
}

// supersededGrace is how long a request whose worker moved on waits for
// its end before it counts as abandoned: with the spool on, the end may be
// in the spool, taken in within a spool interval of the daemon catching up.
// Ten intervals leave room for a large backlog.
func (c Config) supersededGrace() time.Duration {
	if c.SpoolPath() == "" {
		return 0
	}
	return 10 * c.SpoolInterval
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
	check(c.SpoolInterval >= 10*time.Millisecond && c.SpoolInterval <= time.Minute, "agent.spool-interval %v must be between 10ms and 1m", c.SpoolInterval)
	check(c.SpoolMaxAge >= 0, "agent.spool-max-age must not be negative")
	check(c.SpoolMaxBytes >= protocol.MaxDatagramSize, "agent.spool-max-bytes %d must be at least one datagram (%d bytes)", c.SpoolMaxBytes, protocol.MaxDatagramSize)
	if err := c.FPM.Validate(); err != nil {
		errs = append(errs, err)
	}
	tr := c.Traces
	check(tr.SlowThreshold > 0, "events.slow-threshold must be positive")
	check(tr.SampleRate >= 0 && tr.SampleRate <= 1, "events.sample-rate %v must be between 0 and 1", tr.SampleRate)
	check(tr.ProfileFunctions >= 1, "events.profile-functions must be at least 1")
	l := c.Limits
	check(l.Projects >= 1, "limits.projects must be at least 1")
	check(l.Endpoints >= 1, "limits.endpoints must be at least 1")
	check(l.Functions >= 1, "limits.functions must be at least 1")
	check(l.Queries >= 1, "limits.queries must be at least 1")
	check(l.EndpointQueries >= 1, "limits.endpoint-queries must be at least 1")
	check(l.EndpointFunctions >= 1, "limits.endpoint-functions must be at least 1")
	check(l.WallFunctions >= 1, "limits.wall-functions must be at least 1")
	check(l.TopFunctions >= 0 && l.TopFunctions <= l.Functions, "limits.top-functions %d must be between 0 and limits.functions %d", l.TopFunctions, l.Functions)
	check(l.TopQueries >= 0 && l.TopQueries <= l.Queries, "limits.top-queries %d must be between 0 and limits.queries %d", l.TopQueries, l.Queries)
	return errors.Join(errs...)
}
