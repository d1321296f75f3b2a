// Package host is the agent's host collector: it explains load that is not
// PHP. Every --host.interval it reads /proc/<pid>/stat of every process
// (and /proc/<pid>/task/<tid>/stat of multi-threaded ones) and
// /proc/pressure/*, and turns them into CPU seconds and running and
// uninterruptible (D) tasks by process name, and the kernel's pressure-stall
// totals. /metrics serves the last reading.
//
// Names are the kernel's comm, never a command line or an environment
// (which carry secrets). The heaviest names of each reading get series of
// their own, bounded by internal/labelset; the rest count as "other".
//
// The pieces, one subject a file: config.go (the flags), procfs.go
// (reading and parsing /proc/<pid>/stat), scan.go (per-process state and
// CPU deltas), pressure.go (PSI), collector.go (ranking and the metrics).
package host

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/periodic"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// Options are what a Collector is built from. Only Config is required.
type Options struct {
	Config Config
	// SeriesTTL is how long a process name may stay idle (no CPU, no
	// running or uninterruptible task) before its series are removed: the
	// agent's --agent.series-ttl. 0: never removed.
	SeriesTTL time.Duration
	Log       *slog.Logger     // nil: no logs
	Now       func() time.Time // nil: time.Now
	// SeriesOverflow and SeriesExpired count, by their one label "label",
	// the names sent to "other" at --limits.process-names and those
	// removed after SeriesTTL idle: the agent's
	// bitville_agent_series_overflow_total and
	// bitville_agent_series_expired_total, updated for the label
	// "process_name". Nil: not counted.
	SeriesOverflow, SeriesExpired *prometheus.CounterVec
}

// seriesLabel is the value of the label "label" of the agent's series
// overflow and expiry counters for process names.
const seriesLabel = "process_name"

// Scan error reasons, the label of bitville_host_scan_errors_total.
const (
	reasonProc     = "proc"     // the process directory could not be listed
	reasonStat     = "stat"     // a process's or thread's stat could not be read or parsed
	reasonPressure = "pressure" // a pressure file could not be read or parsed
)

var reasons = [...]string{reasonProc, reasonStat, reasonPressure}

// Collector reads /proc in the background and exposes the last reading.
// Scan and Run may be called from one goroutine at a time; Collect
// (Prometheus) from any.
type Collector struct {
	cfg     Config
	ttl     time.Duration
	log     *slog.Logger
	now     func() time.Time
	logs    *throttle.Throttle
	scanner *scanner // owned by the scanning goroutine
	ranked  []ranked // reused by apply

	mu sync.Mutex // guards what follows
	// The series of each name: CPU ticks since the series was created,
	// tasks at the last scan.
	names     *labelset.Set[nameKey, *nameStats]
	lastScan  time.Time
	scans     uint64
	errors    map[string]uint64
	duration  time.Duration
	processes int
	pressure  []pressure
}

// New returns a collector of o.Config registered on reg. It reads nothing
// until Scan or Run.
func New(o Options, reg prometheus.Registerer) *Collector {
	c := &Collector{
		cfg:     o.Config,
		ttl:     o.SeriesTTL,
		log:     o.Log,
		now:     o.Now,
		logs:    throttle.New(time.Minute),
		scanner: newScanner(o.Config.ProcPath),
		errors:  make(map[string]uint64, len(reasons)),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("collector", "host")
	if c.now == nil {
		c.now = time.Now
	}
	counter := func(v *prometheus.CounterVec) labelset.Counter {
		if v == nil {
			return nil
		}
		return v.WithLabelValues(seriesLabel)
	}
	c.names = labelset.New(labelset.Options[nameKey, *nameStats]{
		Limit:      o.Config.ProcessNames,
		Overflow:   func(nameKey) nameKey { return otherKey },
		New:        func(nameKey) *nameStats { return &nameStats{} },
		Overflowed: counter(o.SeriesOverflow),
		Expired:    counter(o.SeriesExpired),
	})
	reg.MustRegister(c)
	return c
}

// Run scans at once and then every Config.Interval until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	periodic.Run(ctx, c.cfg.Interval, c.Scan)
}

// Scan reads /proc once and updates the series.
func (c *Collector) Scan() {
	now := c.now()
	res := c.scanner.scan()
	took := c.now().Sub(now)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.scans++
	c.duration = took
	if res.pressErr != nil {
		c.errors[reasonPressure]++
		c.logError("cannot read pressure", res.pressErr)
	}
	c.pressure = append(c.pressure[:0], res.pressure...)
	if res.listErr != nil {
		c.errors[reasonProc]++
		c.logError("cannot list processes", res.listErr)
		return
	}
	c.errors[reasonStat] += uint64(res.statErrors)
	c.processes = res.processes
	var elapsed time.Duration
	if !c.lastScan.IsZero() {
		elapsed = now.Sub(c.lastScan)
	}
	c.lastScan = now
	c.apply(res.names, now, elapsed)
	if c.ttl > 0 {
		c.names.Expire(now.Add(-c.ttl), nil)
	}
}

func (c *Collector) logError(msg string, err error) {
	if n, ok := c.logs.Allow(); ok {
		c.log.Warn(msg, "err", err, "suppressed", n)
	}
}

// ranked is a name and its weight in one scan.
type ranked struct {
	key   nameKey
	score float64
}

// apply adds one scan's figures to the series. The names of the scan are
// ranked by cores used since the previous scan plus tasks in
// uninterruptible sleep (both count in the load average; at the first scan,
// which has no previous one, by tasks running and uninterruptible); the top
// --host.top-names get series of their own. A name that has series keeps
// them, and is counted under its name, while it is active; every other
// active name is counted as "other".
func (c *Collector) apply(names map[nameKey]nameStats, now time.Time, elapsed time.Duration) {
	for _, s := range c.names.All() {
		s.running, s.uninterruptible = 0, 0
	}
	c.ranked = c.ranked[:0]
	for k, n := range names {
		if !n.active() {
			continue
		}
		score := float64(n.uninterruptible)
		if elapsed > 0 {
			score += float64(n.cpu) / clockTicks / elapsed.Seconds()
		} else {
			score += float64(n.running)
		}
		c.ranked = append(c.ranked, ranked{k, score})
	}
	slices.SortFunc(c.ranked, func(a, b ranked) int {
		if d := cmp.Compare(b.score, a.score); d != 0 {
			return d
		}
		if d := cmp.Compare(a.key.name, b.key.name); d != 0 {
			return d
		}
		return cmp.Compare(a.key.group, b.key.group)
	})
	var other nameStats
	for i, r := range c.ranked {
		n := names[r.key]
		if _, has := c.names.Lookup(r.key); has || (i < c.cfg.TopNames && r.score > 0) {
			// past --limits.process-names Get gives "other" itself
			if key, s := c.names.Get(r.key, now); key != otherKey || r.key == otherKey {
				s.add(n)
				continue
			}
		}
		other.add(n)
	}
	if other.active() {
		_, s := c.names.Get(otherKey, now)
		s.add(other)
	}
}

func (n *nameStats) add(o nameStats) {
	n.cpu += o.cpu
	n.running += o.running
	n.uninterruptible += o.uninterruptible
}

var (
	cpuDesc = prometheus.NewDesc("bitville_host_process_cpu_seconds_total",
		"CPU time (user and system) of the host's processes by name (comm, never the command line) and group (php, postgres, kernel, other), from the agent's first reading of /proc; processes without series of their own count as name=\"other\".",
		[]string{"name", "group"}, nil)
	tasksDesc = prometheus.NewDesc("bitville_host_tasks",
		"Tasks (threads) by process name in state running (R) or uninterruptible (D) at the last reading of /proc; both count in the load average.",
		[]string{"name", "group", "state"}, nil)
	pressureDesc = prometheus.NewDesc("bitville_host_pressure_stalled_seconds_total",
		"Time in which some (or all: full) non-idle tasks were stalled on the resource, from /proc/pressure (PSI); absent where the kernel has no PSI.",
		[]string{"resource", "scope"}, nil)
	scansDesc = prometheus.NewDesc("bitville_host_scans_total",
		"Readings of /proc by the host collector.", nil, nil)
	scanErrorsDesc = prometheus.NewDesc("bitville_host_scan_errors_total",
		"Host collector problems by reason: proc (the process directory could not be listed: the reading was skipped), stat (a process's or thread's stat could not be read or parsed), pressure (a pressure file could not be read or parsed).",
		[]string{"reason"}, nil)
	scanDurationDesc = prometheus.NewDesc("bitville_host_scan_duration_seconds",
		"How long the last reading of /proc took.", nil, nil)
	processesDesc = prometheus.NewDesc("bitville_host_processes",
		"Processes read at the last reading of /proc.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cpuDesc, tasksDesc, pressureDesc, scansDesc, scanErrorsDesc, scanDurationDesc, processesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the last reading, never a new
// one.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, s := range c.names.All() {
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, float64(s.cpu)/clockTicks, k.name, k.group)
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(s.running), k.name, k.group, "running")
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(s.uninterruptible), k.name, k.group, "uninterruptible")
	}
	for _, p := range c.pressure {
		ch <- prometheus.MustNewConstMetric(pressureDesc, prometheus.CounterValue, p.Seconds, p.Resource, p.Scope)
	}
	ch <- prometheus.MustNewConstMetric(scansDesc, prometheus.CounterValue, float64(c.scans))
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(scanErrorsDesc, prometheus.CounterValue, float64(c.errors[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(scanDurationDesc, prometheus.GaugeValue, c.duration.Seconds())
	ch <- prometheus.MustNewConstMetric(processesDesc, prometheus.GaugeValue, float64(c.processes))
}
