package phpagent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/fastcgi"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// The php-fpm pool status collector: it reads each configured pool's status
// page (`?json&full`) straight over FastCGI at scrape time, turns the pool
// counters into bitville_fpm_* metrics and the workers into the running
// view of /api/v1/fpm, and reports workers running longer than the
// long-request threshold once each as events.

// EventFPMLongRunning is the kind of the event for a php-fpm worker seen in
// the status page running one request for longer than the long-request
// threshold. It is reported once per request (worker pid, worker start
// time, and the worker's request counter identify the request).
const EventFPMLongRunning = "fpm_long_running"

// fpmCacheTTL is how long a status read is reused: two scrapes (or a scrape
// and an API call) within it reach php-fpm once.
const fpmCacheTTL = time.Second

// fpmMaxPoolLabel bounds a pool name used as a label value.
const fpmMaxPoolLabel = 64

// FPMTarget is one pool's status page, parsed from a --fpm.status-uri value.
type FPMTarget struct {
	URI     string // as configured
	Network string // "unix" or "tcp"
	Address string // socket path or host:port
	Path    string // the pool's pm.status_path, e.g. /status
}

// ParseFPMStatusURI parses a status page address in the format of
// hipages/php-fpm_exporter: `unix:///run/php/php8.2-fpm.sock;/status` or
// `tcp://127.0.0.1:9000/status`. The path defaults to /status. The agent
// adds `?json&full` itself, so a query is an error.
func ParseFPMStatusURI(s string) (FPMTarget, error) {
	t := FPMTarget{URI: s}
	switch {
	case strings.HasPrefix(s, "unix://"):
		rest := strings.TrimPrefix(s, "unix://")
		sock, path, _ := strings.Cut(rest, ";")
		if sock == "" || !strings.HasPrefix(sock, "/") {
			return t, fmt.Errorf("fpm status uri %q: want unix:///absolute/socket/path;/status", s)
		}
		if len(sock) > 107 {
			return t, fmt.Errorf("fpm status uri %q: socket path longer than the 107 bytes a unix socket path may have", s)
		}
		t.Network, t.Address, t.Path = "unix", sock, path
	case strings.HasPrefix(s, "tcp://"):
		u, err := url.Parse(s)
		if err != nil {
			return t, fmt.Errorf("cannot parse fpm status uri %q: %w", s, err)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return t, fmt.Errorf("fpm status uri %q: want tcp://host:port/path without user, query or fragment (the agent asks for ?json&full itself)", s)
		}
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return t, fmt.Errorf("fpm status uri %q: want tcp://host:port/path", s)
		}
		t.Network, t.Address, t.Path = "tcp", u.Host, u.Path
	default:
		return t, fmt.Errorf("fpm status uri %q: want unix:///socket;/path or tcp://host:port/path", s)
	}
	if t.Path == "" {
		t.Path = "/status"
	}
	if !strings.HasPrefix(t.Path, "/") || strings.ContainsAny(t.Path, "?# \t\r\n") {
		return t, fmt.Errorf("fpm status uri %q: the status path %q must start with / and have no query", s, t.Path)
	}
	return t, nil
}

// FPMStatus is one pool's status page. Numbers are as php-fpm reports them;
// counters count since StartTime.
type FPMStatus struct {
	Pool               string      `json:"pool"`
	ProcessManager     string      `json:"process_manager"`
	StartTime          time.Time   `json:"start_time"`
	AcceptedConn       uint64      `json:"accepted_conn"`
	ListenQueue        int64       `json:"listen_queue"`
	MaxListenQueue     int64       `json:"max_listen_queue"`
	ListenQueueLen     int64       `json:"listen_queue_len"`
	IdleProcesses      int64       `json:"idle_processes"`
	ActiveProcesses    int64       `json:"active_processes"`
	TotalProcesses     int64       `json:"total_processes"`
	MaxActiveProcesses int64       `json:"max_active_processes"`
	MaxChildrenReached uint64      `json:"max_children_reached"`
	SlowRequests       uint64      `json:"slow_requests"`
	Workers            []FPMWorker `json:"workers"`
}

// FPMWorker is one worker process of the status page. For a worker in
// state Running the request fields describe the request it is running; for
// an idle one they describe its last request. "-" in php-fpm's output is an
// empty string here.
type FPMWorker struct {
	PID            int       `json:"pid"`
	State          string    `json:"state"` // Idle, Running, Reading headers, Info, Finishing, Ending
	Started        time.Time `json:"started"`
	Requests       uint64    `json:"requests"` // requests served, the current one included
	RequestSeconds float64   `json:"request_seconds"`
	Method         string    `json:"method,omitempty"`
	URI            string    `json:"uri,omitempty"` // request uri with query string
	Script         string    `json:"script,omitempty"`
	ContentLength  int64     `json:"content_length"`
	User           string    `json:"user,omitempty"`
	LastCPU        float64   `json:"last_request_cpu_percent"`
	LastMemory     int64     `json:"last_request_memory_bytes"`

	duration time.Duration // RequestSeconds, exactly
}

// Running says whether w is executing a request.
func (w *FPMWorker) Running() bool { return w.State == "Running" }

// fpmStatusJSON is the JSON of php-fpm's `?json&full` status page
// (sapi/fpm/fpm/fpm_status.c; field list in the php-fpm manual, "FPM status
// page"). Unknown fields are ignored so newer php-fpm versions still parse.
type fpmStatusJSON struct {
	Pool               *string `json:"pool"`
	ProcessManager     string  `json:"process manager"`
	StartTime          int64   `json:"start time"`
	AcceptedConn       uint64  `json:"accepted conn"`
	ListenQueue        int64   `json:"listen queue"`
	MaxListenQueue     int64   `json:"max listen queue"`
	ListenQueueLen     int64   `json:"listen queue len"`
	IdleProcesses      int64   `json:"idle processes"`
	ActiveProcesses    int64   `json:"active processes"`
	TotalProcesses     int64   `json:"total processes"`
	MaxActiveProcesses int64   `json:"max active processes"`
	MaxChildrenReached uint64  `json:"max children reached"`
	SlowRequests       uint64  `json:"slow requests"`
	Processes          []struct {
		PID             int     `json:"pid"`
		State           string  `json:"state"`
		StartTime       int64   `json:"start time"`
		Requests        uint64  `json:"requests"`
		RequestDuration uint64  `json:"request duration"` // µs
		RequestMethod   string  `json:"request method"`
		RequestURI      string  `json:"request uri"`
		ContentLength   int64   `json:"content length"`
		User            string  `json:"user"`
		Script          string  `json:"script"`
		LastRequestCPU  float64 `json:"last request cpu"`
		LastRequestMem  int64   `json:"last request memory"`
	} `json:"processes"`
}

// parseFPMStatus parses the body of php-fpm's `?json&full` status page.
func parseFPMStatus(b []byte) (FPMStatus, error) {
	var raw fpmStatusJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return FPMStatus{}, fmt.Errorf("cannot parse php-fpm status JSON (%d bytes): %w", len(b), err)
	}
	if raw.Pool == nil || *raw.Pool == "" {
		return FPMStatus{}, fmt.Errorf("php-fpm status JSON has no pool name (%d bytes: is this the ?json status page?)", len(b))
	}
	dash := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	st := FPMStatus{
		Pool:               *raw.Pool,
		ProcessManager:     raw.ProcessManager,
		StartTime:          time.Unix(raw.StartTime, 0).UTC(),
		AcceptedConn:       raw.AcceptedConn,
		ListenQueue:        raw.ListenQueue,
		MaxListenQueue:     raw.MaxListenQueue,
		ListenQueueLen:     raw.ListenQueueLen,
		IdleProcesses:      raw.IdleProcesses,
		ActiveProcesses:    raw.ActiveProcesses,
		TotalProcesses:     raw.TotalProcesses,
		MaxActiveProcesses: raw.MaxActiveProcesses,
		MaxChildrenReached: raw.MaxChildrenReached,
		SlowRequests:       raw.SlowRequests,
		Workers:            make([]FPMWorker, 0, len(raw.Processes)),
	}
	for _, p := range raw.Processes {
		st.Workers = append(st.Workers, FPMWorker{
			PID:            p.PID,
			State:          p.State,
			Started:        time.Unix(p.StartTime, 0).UTC(),
			Requests:       p.Requests,
			RequestSeconds: float64(p.RequestDuration) / 1e6,
			duration:       time.Duration(p.RequestDuration) * time.Microsecond,
			Method:         dash(p.RequestMethod),
			URI:            dash(p.RequestURI),
			Script:         dash(p.Script),
			ContentLength:  p.ContentLength,
			User:           dash(p.User),
			LastCPU:        p.LastRequestCPU,
			LastMemory:     p.LastRequestMem,
		})
	}
	return st, nil
}

// Reasons a status read fails; the reason label of
// bitville_fpm_status_errors_total.
const (
	fpmErrConnect    = "connect"     // cannot connect to the socket
	fpmErrTimeout    = "timeout"     // no complete answer within --fpm.status-timeout
	fpmErrFastCGI    = "fastcgi"     // the connection broke or the answer is not FastCGI
	fpmErrHTTPStatus = "http_status" // the answer is not 200 (status page not enabled at that path?)
	fpmErrParse      = "parse"       // the body is not the JSON status page
)

var fpmErrReasons = []string{fpmErrConnect, fpmErrTimeout, fpmErrFastCGI, fpmErrHTTPStatus, fpmErrParse}

// fpmRead is the outcome of one status read.
type fpmRead struct {
	at       time.Time
	duration time.Duration
	status   FPMStatus
	err      error
	reason   string // one of the fpmErr* when err != nil
}

// fpmPool is one configured status page and its latest read.
type fpmPool struct {
	target FPMTarget
	client *fastcgi.Client

	mu     sync.Mutex // held for a read, so concurrent callers wait for one read
	last   fpmRead
	hasRun bool
	// label is the pool name once a read told it, else the URI; guarded by
	// fpmMonitor.labelMu, not mu, so labels() never waits for a read.
	label string
	// long holds the requests already reported as long running, so each is
	// reported once; it keeps only those still running at the last read.
	long map[fpmRequestKey]bool
}

type fpmRequestKey struct {
	pid      int
	started  int64
	requests uint64
}

// fpmMonitor reads the configured pools' status pages and follows the
// slowlogs. Safe for concurrent use.
type fpmMonitor struct {
	a       *Agent
	log     *slog.Logger
	timeout time.Duration
	pools   []*fpmPool
	labelMu sync.Mutex             // guards fpmPool.label
	errors  *prometheus.CounterVec // pool, reason
	slow    *slowlogMetrics
	logs    *throttle.Throttle // status read failures
	// slowLogs throttles logs of invalid slowlog lines.
	slowLogs  *throttle.Throttle
	slowState slowlogState
}

func newFPMMonitor(a *Agent, reg prometheus.Registerer) *fpmMonitor {
	m := &fpmMonitor{
		a:       a,
		log:     a.log.With("collector", "fpm"),
		timeout: a.cfg.FPMStatusTimeout,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_status_errors_total",
			Help: "php-fpm status page reads that failed, by reason (connect, timeout, fastcgi, http_status, parse).",
		}, []string{"pool", "reason"}),
		logs:     throttle.New(time.Minute),
		slowLogs: throttle.New(time.Minute),
	}
	for _, s := range a.cfg.FPMStatusURIs {
		t, err := ParseFPMStatusURI(s)
		if err != nil {
			// Validate rejects these; an agent built without it skips them.
			m.log.Error("ignoring php-fpm status uri", "err", err)
			continue
		}
		m.pools = append(m.pools, &fpmPool{
			target: t,
			client: &fastcgi.Client{Network: t.Network, Address: t.Address},
			label:  t.URI,
			long:   make(map[fpmRequestKey]bool),
		})
	}
	m.slow = newSlowlogMetrics(a.self, len(a.cfg.FPMSlowlogs) > 0)
	// One collector for everything fpm: the counters a status read updates
	// are collected after the read, so a scrape shows its own errors.
	reg.MustRegister(&fpmCollector{m: m})
	if len(m.pools) > 0 {
		a.self.events.WithLabelValues(EventFPMLongRunning)
	}
	if len(a.cfg.FPMSlowlogs) > 0 {
		a.self.events.WithLabelValues(EventFPMSlowlog)
	}
	return m
}

// statusParams are the CGI variables of a status request. php-fpm matches
// pm.status_path against SCRIPT_NAME; SCRIPT_FILENAME is what a web server
// would send too.
func statusParams(t FPMTarget) map[string]string {
	return map[string]string{
		"GATEWAY_INTERFACE": "FastCGI/1.0",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_SOFTWARE":   "bitville-apm",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       t.Path,
		"SCRIPT_FILENAME":   t.Path,
		"REQUEST_URI":       t.Path + "?json&full",
		"QUERY_STRING":      "json&full",
		"REMOTE_ADDR":       "127.0.0.1",
	}
}

// read returns p's status, read now unless the last read is younger than
// fpmCacheTTL. A fresh successful read reports newly long-running workers.
func (m *fpmMonitor) read(ctx context.Context, p *fpmPool) fpmRead {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hasRun && m.a.now().Sub(p.last.at) < fpmCacheTTL {
		return p.last
	}
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	r := fpmRead{at: m.a.now()}
	resp, err := p.client.Do(ctx, statusParams(p.target))
	if perr := parent.Err(); perr != nil {
		// The caller gave up (agent stopping, API client gone): not a
		// php-fpm problem, so neither cached nor counted.
		return fpmRead{at: r.at, duration: time.Since(start), err: fmt.Errorf("status read of %s abandoned: %w", p.target.URI, perr), reason: fpmErrTimeout}
	}
	switch {
	case err != nil:
		r.err, r.reason = err, classifyFPMError(err)
	case resp.Status != 200:
		r.err = fmt.Errorf("status page answered %d (is pm.status_path %s set in this pool?): %s", resp.Status, p.target.Path, firstLine(resp.Body, resp.Stderr))
		r.reason = fpmErrHTTPStatus
	default:
		r.status, r.err = parseFPMStatus(resp.Body)
		if r.err != nil {
			r.reason = fpmErrParse
		}
	}
	r.duration = time.Since(start)
	if r.err != nil {
		r.err = fmt.Errorf("cannot read php-fpm status %s: %w", p.target.URI, r.err)
		m.errors.WithLabelValues(m.labels()[slices.Index(m.pools, p)], r.reason).Inc()
		if n, ok := m.logs.Allow(); ok {
			m.log.Warn("php-fpm status read failed", "uri", p.target.URI, "reason", r.reason, "err", r.err, "suppressed_since_last", n)
		}
	} else if name := truncateUTF8(r.status.Pool, fpmMaxPoolLabel); name != p.label {
		m.labelMu.Lock()
		p.label = name
		m.labelMu.Unlock()
		// Reasons start at zero, so a rate over the first error works.
		l := m.labels()[slices.Index(m.pools, p)]
		for _, reason := range fpmErrReasons {
			m.errors.WithLabelValues(l, reason)
		}
		m.slow.knownPool(name, r.at)
	}
	p.last, p.hasRun = r, true
	if r.err == nil {
		m.reportLong(p, r)
	}
	return r
}

// firstLine is a short excerpt of a failed response for the error message.
func firstLine(body, stderr []byte) string {
	s := bytes.TrimSpace(stderr)
	if len(s) == 0 {
		s = bytes.TrimSpace(body)
	}
	if i := bytes.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return truncateUTF8(string(s), 200)
}

// classifyFPMError maps a fastcgi.Client error to a reason: a timeout, a
// failed dial, or else a broken connection or protocol (fastcgi).
func classifyFPMError(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return fpmErrTimeout
	case errors.As(err, &op) && op.Op == "dial":
		return fpmErrConnect
	}
	return fpmErrFastCGI
}

// reportLong emits an event for each worker of r that runs a request for
// longer than the long-request threshold and was not reported yet. Called
// with p.mu held.
func (m *fpmMonitor) reportLong(p *fpmPool, r fpmRead) {
	seen := make(map[fpmRequestKey]bool, len(p.long))
	var fresh []FPMWorker
	for _, w := range r.status.Workers {
		if !w.Running() || w.duration < m.a.cfg.LongRequestThreshold {
			continue
		}
		k := fpmRequestKey{w.PID, w.Started.Unix(), w.Requests}
		seen[k] = true
		if !p.long[k] {
			fresh = append(fresh, w)
		}
	}
	p.long = seen
	if len(fresh) == 0 {
		return
	}
	inflight := m.a.inflightByPID()
	for i := range fresh {
		w := fresh[i]
		req := InflightRequest{
			Pool: r.status.Pool, PID: w.PID, Method: w.Method, URI: w.URI,
			Started:  r.at.Add(-w.duration),
			LastSeen: r.at,
		}
		if in, ok := inflight[w.PID]; ok && (in.Pool == "" || in.Pool == r.status.Pool) {
			req = in // the PHP agent knows more: project, endpoint, id, stack
		}
		m.a.emit(Event{Kind: EventFPMLongRunning, Time: r.at, Seconds: w.RequestSeconds, Request: req, FPMWorker: &w})
	}
}

// inflightByPID returns the requests in flight by worker pid, to enrich
// php-fpm events with what the PHP agent reported about the same request.
func (a *Agent) inflightByPID() map[int]InflightRequest {
	snap := a.inflight.Snapshot()
	out := make(map[int]InflightRequest, len(snap))
	for _, r := range snap {
		out[r.PID] = r
	}
	return out
}

// readAll reads every pool concurrently, so one slow pool costs one
// timeout, not one per pool.
func (m *fpmMonitor) readAll(ctx context.Context) []fpmRead {
	out := make([]fpmRead, len(m.pools))
	var wg sync.WaitGroup
	for i, p := range m.pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = m.read(ctx, p)
		}()
	}
	wg.Wait()
	return out
}

// labels returns the pool label of each pool. Two status pages that name
// the same pool (two php-fpm masters with a pool "www" each) get the URI
// appended to the later one so their series stay apart.
func (m *fpmMonitor) labels() []string {
	out := make([]string, len(m.pools))
	used := make(map[string]bool, len(m.pools))
	m.labelMu.Lock()
	defer m.labelMu.Unlock()
	for i, p := range m.pools {
		l := p.label
		if used[l] {
			l = l + "@" + p.target.URI
		}
		used[l] = true
		out[i] = l
	}
	return out
}

// poll reads the status pages every interval until ctx ends, so that
// long-running workers are reported even when nobody scrapes.
func (m *fpmMonitor) poll(ctx context.Context, every time.Duration) {
	if len(m.pools) == 0 || every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.readAll(ctx)
		}
	}
}

// fpmCollector exposes the pools' status at scrape time. A pool that cannot
// be read gives bitville_fpm_up 0 and no other pool series; it never fails
// the scrape.
type fpmCollector struct{ m *fpmMonitor }

func fpmDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, []string{"pool"}, nil)
}

var (
	fpmUpDesc             = fpmDesc("bitville_fpm_up", "Whether the pool's php-fpm status page could be read (1) or not (0).")
	fpmScrapeDurationDesc = fpmDesc("bitville_fpm_status_scrape_duration_seconds", "How long reading the pool's status page took.")
	fpmActiveDesc         = fpmDesc("bitville_fpm_active_processes", "Workers serving a request.")
	fpmIdleDesc           = fpmDesc("bitville_fpm_idle_processes", "Idle workers.")
	fpmTotalDesc          = fpmDesc("bitville_fpm_total_processes", "Workers, idle and active.")
	fpmMaxActiveDesc      = fpmDesc("bitville_fpm_max_active_processes", "Most workers active at once since php-fpm started.")
	fpmListenQueueDesc    = fpmDesc("bitville_fpm_listen_queue", "Connections waiting in the listen queue for a free worker.")
	fpmListenQueueMaxDesc = fpmDesc("bitville_fpm_listen_queue_max", "Longest listen queue since php-fpm started.")
	fpmListenQueueLenDesc = fpmDesc("bitville_fpm_listen_queue_length", "Size of the socket's listen queue (backlog).")
	fpmMaxChildrenDesc    = fpmDesc("bitville_fpm_max_children_reached_total", "Times the pool hit pm.max_children since php-fpm started.")
	fpmSlowRequestsDesc   = fpmDesc("bitville_fpm_slow_requests_total", "Requests that exceeded request_slowlog_timeout since php-fpm started.")
	fpmAcceptedDesc       = fpmDesc("bitville_fpm_accepted_connections_total", "Connections accepted by the pool since php-fpm started.")
	fpmStartTimeDesc      = fpmDesc("bitville_fpm_start_time_seconds", "When php-fpm (the pool) started, in seconds since the epoch.")
	fpmLongRunningDesc    = fpmDesc("bitville_fpm_requests_long_running", "Workers in state Running whose request has run for longer than --agent.long-request-threshold.")
)

func (c *fpmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fpmUpDesc, fpmScrapeDurationDesc, fpmActiveDesc, fpmIdleDesc, fpmTotalDesc,
		fpmMaxActiveDesc, fpmListenQueueDesc, fpmListenQueueMaxDesc, fpmListenQueueLenDesc, fpmMaxChildrenDesc,
		fpmSlowRequestsDesc, fpmAcceptedDesc, fpmStartTimeDesc, fpmLongRunningDesc} {
		ch <- d
	}
	c.m.errors.Describe(ch)
	c.m.slow.describe(ch)
}

func (c *fpmCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	defer m.slow.collect(ch)
	defer m.errors.Collect(ch)
	if len(m.pools) == 0 {
		return
	}
	reads := m.readAll(context.Background())
	labels := m.labels()
	long := m.a.cfg.LongRequestThreshold
	for i, r := range reads {
		pool := labels[i]
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, pool)
		}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), pool)
		}
		gauge(fpmScrapeDurationDesc, r.duration.Seconds())
		if r.err != nil {
			gauge(fpmUpDesc, 0)
			continue
		}
		s := &r.status
		gauge(fpmUpDesc, 1)
		gauge(fpmActiveDesc, float64(s.ActiveProcesses))
		gauge(fpmIdleDesc, float64(s.IdleProcesses))
		gauge(fpmTotalDesc, float64(s.TotalProcesses))
		gauge(fpmMaxActiveDesc, float64(s.MaxActiveProcesses))
		gauge(fpmListenQueueDesc, float64(s.ListenQueue))
		gauge(fpmListenQueueMaxDesc, float64(s.MaxListenQueue))
		gauge(fpmListenQueueLenDesc, float64(s.ListenQueueLen))
		counter(fpmMaxChildrenDesc, s.MaxChildrenReached)
		counter(fpmSlowRequestsDesc, s.SlowRequests)
		counter(fpmAcceptedDesc, s.AcceptedConn)
		gauge(fpmStartTimeDesc, float64(s.StartTime.Unix()))
		n := 0
		for _, w := range s.Workers {
			if w.Running() && w.duration >= long {
				n++
			}
		}
		gauge(fpmLongRunningDesc, float64(n))
	}
}

// FPMPoolView is one pool in /api/v1/fpm.
type FPMPoolView struct {
	URI           string     `json:"uri"`
	Pool          string     `json:"pool"` // the label value of its metrics
	Up            bool       `json:"up"`
	Error         string     `json:"error,omitempty"`
	ReadAt        time.Time  `json:"read_at"`
	ReadSeconds   float64    `json:"read_seconds"`
	Status        *FPMStatus `json:"status,omitempty"` // workers: running first, longest first
	LongRunning   int        `json:"long_running"`
	LongThreshold float64    `json:"long_running_threshold_seconds"`
}

// FPMView reads (or reuses) every pool's status for /api/v1/fpm. Running
// workers come first, longest running first.
func (a *Agent) FPMView(ctx context.Context) []FPMPoolView {
	m := a.fpm
	reads := m.readAll(ctx)
	labels := m.labels()
	out := make([]FPMPoolView, len(reads))
	for i, r := range reads {
		v := FPMPoolView{URI: m.pools[i].target.URI, Pool: labels[i], Up: r.err == nil, ReadAt: r.at,
			ReadSeconds: r.duration.Seconds(), LongThreshold: a.cfg.LongRequestThreshold.Seconds()}
		if r.err != nil {
			v.Error = r.err.Error()
		} else {
			s := r.status
			s.Workers = slices.Clone(s.Workers)
			slices.SortStableFunc(s.Workers, func(x, y FPMWorker) int {
				if x.Running() != y.Running() {
					if x.Running() {
						return -1
					}
					return 1
				}
				if c := cmp.Compare(y.RequestSeconds, x.RequestSeconds); c != 0 {
					return c
				}
				return x.PID - y.PID
			})
			for _, w := range s.Workers {
				if w.Running() && w.duration >= a.cfg.LongRequestThreshold {
					v.LongRunning++
				}
			}
			v.Status = &s
		}
		out[i] = v
	}
	return out
}
