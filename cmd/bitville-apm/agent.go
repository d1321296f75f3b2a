package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bitville/bitville-apm/exporters/fpm"
	"github.com/bitville/bitville-apm/exporters/phpagent"
	"github.com/bitville/bitville-apm/internal/buildinfo"
)

// AgentCmd runs the per-host agent daemon.
type AgentCmd struct {
	Socket               string           `name:"agent.socket" default:"/run/bitville-apm/agent.sock" placeholder:"PATH" help:"Unix datagram socket the PHP agent sends to. A stale socket file is replaced."`
	SocketMode           string           `name:"agent.socket-mode" default:"0660" placeholder:"OCTAL" help:"Permission bits of the socket file; the PHP workers' user needs write access."`
	SocketGroup          string           `name:"agent.socket-group" placeholder:"GROUP" help:"Group (name or gid) to own the socket file, e.g. the php-fpm pool's group. Empty keeps the daemon's group."`
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
	SpoolDir             string           `name:"agent.spool-dir" placeholder:"DIR" help:"The PHP agents' disk spool (their spool_dir): end messages they could not send are replayed from it at start, then removed. Empty: no replay."`
	EventsBuffer         int              `name:"agent.events-buffer" default:"1000" help:"Recent abandoned and long-running request events kept for /api/v1/events."`
	NativeHistograms     bool             `name:"metrics.native-histograms" help:"Also expose native histograms (bucket factor 1.1, at most 100 buckets) beside the classic buckets; costs about 7% more per message."`
	ListenAddress        string           `name:"web.listen-address" default:":19100" placeholder:"ADDR" help:"Address for /, /metrics, /healthz, /readyz and /api/v1/."`
	Projects             int              `name:"limits.projects" default:"20" help:"Distinct projects; more are counted as project=\"other\"."`
	Endpoints            int              `name:"limits.endpoints" default:"500" help:"Endpoints per project; more are counted as endpoint=\"other\"."`
	Functions            int              `name:"limits.functions" default:"2000" help:"Functions with a self-time counter per project; more are counted as function=\"other\"."`
	Queries              int              `name:"limits.queries" default:"1000" help:"Query fingerprints per project; more are counted as query_fp=\"other\"."`
	EndpointQueries      int              `name:"limits.endpoint-queries" default:"10000" help:"(endpoint, query) pairs per project for bitville_php_sql_seconds_total; more are counted as query_fp=\"other\"."`
	EndpointFunctions    int              `name:"limits.endpoint-functions" default:"10000" help:"(endpoint, function) pairs per project for bitville_php_endpoint_function_self_seconds_total (each request's 10 heaviest functions); more are counted as function=\"other\"."`
	TopFunctions         int              `name:"limits.top-functions" default:"100" help:"Functions per project that also get a duration histogram (the heaviest by recent self time)."`
	TopQueries           int              `name:"limits.top-queries" default:"200" help:"Queries per project that also get a duration histogram (the heaviest by recent time)."`
	FPMStatusURIs        []string         `name:"fpm.status-uri" placeholder:"URI" help:"php-fpm pool status page to read over FastCGI at scrape time (repeatable, or comma-separated): unix:///run/php/php8.2-fpm.sock;/status or tcp://127.0.0.1:9000/status. The pool needs pm.status_path."`
	FPMStatusTimeout     time.Duration    `name:"fpm.status-timeout" default:"2s" help:"Bound of one status page read; past it the pool's bitville_fpm_up is 0."`
	FPMPollInterval      time.Duration    `name:"fpm.poll-interval" default:"10s" help:"Also read the status pages this often between scrapes, so workers running past the long-request threshold are reported as events; 0 reads them only at scrape and API time."`
	FPMSlowlogs          []string         `name:"fpm.slowlog" placeholder:"PATH" help:"php-fpm slowlog file to follow (repeatable, or comma-separated); read from its end at start, through rename and copytruncate rotation."`
}

func (c *AgentCmd) config() (phpagent.Config, error) {
	mode, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil {
		return phpagent.Config{}, fmt.Errorf("cannot parse agent.socket-mode %q as octal: %w", c.SocketMode, err)
	}
	cfg := phpagent.DefaultConfig()
	cfg.Socket = c.Socket
	cfg.SocketMode = fs.FileMode(mode)
	cfg.SocketGroup = c.SocketGroup
	cfg.Readers = c.Readers
	cfg.ReceiveBuffer = int(c.ReceiveBuffer)
	cfg.MinQueueLen = c.MinQueueLen
	cfg.ReadPause = c.ReadPause
	cfg.ListenAddress = c.ListenAddress
	cfg.LongRequestThreshold = c.LongRequestThreshold
	cfg.CheckPIDs = c.CheckPIDs
	cfg.InflightMaxAge = c.InflightMaxAge
	cfg.InflightMax = c.InflightMax
	cfg.SweepInterval = c.SweepInterval
	cfg.SeriesTTL = c.SeriesTTL
	cfg.SQLCacheSize = c.SQLCacheSize
	cfg.RankInterval = c.RankInterval
	cfg.EventsBuffer = c.EventsBuffer
	cfg.SpoolDir = c.SpoolDir
	cfg.NativeBuckets = c.NativeHistograms
	cfg.FPM = fpm.Config{
		StatusURIs: c.FPMStatusURIs, StatusTimeout: c.FPMStatusTimeout, PollInterval: c.FPMPollInterval, Slowlogs: c.FPMSlowlogs,
	}
	cfg.Limits = phpagent.Limits{
		Projects: c.Projects, Endpoints: c.Endpoints, Functions: c.Functions, Queries: c.Queries,
		EndpointQueries: c.EndpointQueries, EndpointFunctions: c.EndpointFunctions, TopFunctions: c.TopFunctions, TopQueries: c.TopQueries,
	}
	return cfg, cfg.Validate()
}

// newRegistry returns the registry of a daemon: the Go and process
// collectors and a build-info gauge called name (value 1; labels version,
// revision, goversion), with the build it describes.
func newRegistry(name, help string) (*prometheus.Registry, buildinfo.Info) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := buildinfo.Get()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        name,
		Help:        help,
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg, bi
}

// Run starts the daemon and blocks until SIGTERM or SIGINT, then stops
// reading, lets in-progress scrapes finish and exits.
func (c *AgentCmd) Run(log *slog.Logger) error {
	cfg, err := c.config()
	if err != nil {
		return fmt.Errorf("invalid agent configuration: %w", err)
	}
	log = log.With("component", "agent")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg, bi := newRegistry("bitville_agent_build_info", "Build of the running agent (value is always 1).")

	// The agent and php-fpm's monitor, wired one way: the monitor's events
	// go to the agent, enriched by what the agent knows of the worker's
	// request; the monitor never calls back into the agent otherwise.
	agent := phpagent.New(cfg, log, reg)
	overflow, expired := agent.SeriesCounters()
	php := fpm.New(fpm.Options{
		Config:         cfg.FPM,
		LongRequest:    cfg.LongRequestThreshold,
		SeriesTTL:      cfg.SeriesTTL,
		Log:            log,
		Sink:           agent.EmitFPM,
		Lookup:         agent.FPMRequest,
		SeriesOverflow: overflow,
		SeriesExpired:  expired,
	}, reg)
	conn, err := phpagent.ListenSocket(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		conn.Close()
		return fmt.Errorf("cannot listen on web.listen-address %s: %w", cfg.ListenAddress, err)
	}
	rcvbuf, _ := phpagent.ReceiveBuffer(conn.UnixConn)
	switch {
	case conn.QueueErr != nil:
		log.Warn("the socket queues few datagrams: PHP workers will drop messages when the daemon falls behind", "max_queued_datagrams", conn.QueueLen, "err", conn.QueueErr)
	case conn.QueueRaised:
		log.Info("raised net.unix.max_dgram_qlen", "value", conn.QueueLen)
	}
	log.Info("agent started", "version", bi.Version, "socket", cfg.Socket, "web", ln.Addr().String(), "receive_buffer", rcvbuf, "max_queued_datagrams", conn.QueueLen, "readers", cfg.Readers,
		"fpm_status", len(cfg.FPM.StatusURIs), "fpm_slowlogs", len(cfg.FPM.Slowlogs))

	mux := http.NewServeMux()
	mux.Handle("/", agent.Handler(reg, bi.Version))
	mux.Handle("GET /api/v1/fpm", php.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()

	bgDone := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Go(func() { agent.RunBackground(ctx) })
		wg.Go(func() { php.Run(ctx) })
		wg.Wait()
		close(bgDone)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- agent.Serve(ctx, conn, cfg.Readers) }()
	if cfg.SpoolDir != "" {
		// After the socket is being read, so nothing new waits meanwhile.
		go func() {
			st, err := agent.ReplaySpool(cfg.SpoolDir)
			if err != nil {
				log.Warn("cannot replay the spool", "err", err)
				return
			}
			log.Info("spool replayed", "dir", cfg.SpoolDir, "replayed", st.Replayed, "skipped", st.Skipped, "invalid", st.Invalid, "unreadable", st.Unreadable)
		}()
	}

	select {
	case <-ctx.Done():
	case err := <-httpErr:
		stop()
		<-serveErr
		<-bgDone
		return fmt.Errorf("http server stopped: %w", err)
	}
	log.Info("stopping")
	if err := <-serveErr; err != nil && !errors.Is(err, net.ErrClosed) {
		log.Warn("closing the socket", "err", err)
	}
	<-bgDone
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("cannot stop the http server cleanly: %w", err)
	}
	log.Info("stopped")
	return nil
}
