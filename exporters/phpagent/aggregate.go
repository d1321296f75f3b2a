package phpagent

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// Histogram buckets. They are fixed and the same on every host so that
// histograms from many hosts can be summed; see docs/metrics.md.
var (
	RequestBuckets  = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	FunctionBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	SQLBuckets      = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	MemoryBuckets   = prometheus.ExponentialBuckets(1<<20, 2, 11) // 1 MiB … 1 GiB
)

// EndpointFunctionsPerRequest is how many of a request's functions (the
// heaviest by self time) are also counted by endpoint: enough to show what
// an endpoint spends its time in, without a series per endpoint for every
// function any request touched.
const EndpointFunctionsPerRequest = 10

// Aggregator turns decoded messages into the agent's metrics, within the
// configured label limits (dimensions.go). It is safe for concurrent use:
// readers call Apply* concurrently, the scrape calls Collect, and a janitor
// calls Expire and Rank.
type Aggregator struct {
	mu       sync.Mutex
	limits   Limits
	projects *labelset.Set[string, *projectState]
	infos    map[string]*queryInfo

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	cpu         *prometheus.CounterVec
	memory      *prometheus.HistogramVec
	abandoned   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	fnSelf      *prometheus.CounterVec
	epFnSelf    *prometheus.CounterVec
	fnWall      *prometheus.CounterVec
	fnDuration  *prometheus.HistogramVec
	sqlDuration *prometheus.HistogramVec
	sqlSeconds  *prometheus.CounterVec
	sqlCalls    *prometheus.CounterVec
	queryInfo   *prometheus.GaugeVec

	self *SelfMetrics
}

// NewAggregator creates the contract metrics and registers them on reg.
func NewAggregator(limits Limits, nativeBuckets bool, self *SelfMetrics, reg prometheus.Registerer) *Aggregator {
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		o := prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}
		if nativeBuckets {
			o.NativeHistogramBucketFactor = 1.1
			o.NativeHistogramMaxBucketNumber = 100
			o.NativeHistogramMinResetDuration = time.Hour
		}
		return prometheus.NewHistogramVec(o, labels)
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	a := &Aggregator{
		limits: limits,
		infos:  make(map[string]*queryInfo),
		self:   self,

		requests:    counter("bitville_php_requests_total", "Finished PHP requests and CLI runs.", "project", "endpoint", "method", "status"),
		duration:    hist("bitville_php_request_duration_seconds", "Wall time of finished requests.", RequestBuckets, "project", "endpoint"),
		cpu:         counter("bitville_php_request_cpu_seconds_total", "CPU time (user+system) of finished requests.", "project", "endpoint"),
		memory:      hist("bitville_php_request_memory_peak_bytes", "Peak PHP memory of finished requests.", MemoryBuckets, "project", "endpoint"),
		abandoned:   counter("bitville_php_requests_abandoned_total", "Requests that started and never finished (worker killed, crashed or lost its end message).", "project", "endpoint"),
		errors:      counter("bitville_php_errors_total", "PHP errors, warnings and exceptions reported by finished requests, by kind.", "project", "endpoint", "kind"),
		fnSelf:      counter("bitville_php_function_self_seconds_total", "Self time of PHP functions from the sampling profiler.", "project", "function"),
		epFnSelf:    counter("bitville_php_endpoint_function_self_seconds_total", "Self time of each request's heaviest functions (sampling profiler), by endpoint.", "project", "endpoint", "function"),
		fnWall:      counter("bitville_php_function_wall_seconds_total", "Wall time PHP functions held the worker, from the real-time sampling profiler: a blocking call with the user function that made it, or a user function with its caller.", "project", "function", "caller"),
		fnDuration:  hist("bitville_php_function_duration_seconds", "Per-request inclusive time of the top functions by self time.", FunctionBuckets, "project", "function"),
		sqlDuration: hist("bitville_php_sql_duration_seconds", "Duration of SQL statements of the top queries by total time, as PHP saw it.", SQLBuckets, "project", "query_fp"),
		sqlSeconds:  counter("bitville_php_sql_seconds_total", "Time PHP spent in SQL statements, by endpoint and query fingerprint.", "project", "endpoint", "query_fp"),
		sqlCalls:    counter("bitville_php_sql_calls_total", "SQL statements PHP ran, by endpoint and query fingerprint.", "project", "endpoint", "query_fp"),
		queryInfo:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bitville_sql_query_info", Help: "Normalised text of a query fingerprint (value is always 1)."}, []string{"query_fp", "query"}),
	}
	a.projects = labelset.New(labelset.Options[string, *projectState]{
		Limit: limits.Projects, Overflow: labelset.Other,
		Overflowed: self.overflow.WithLabelValues("project"), Expired: self.expired.WithLabelValues("project"),
		New: a.newProject,
	})
	reg.MustRegister(a.requests, a.duration, a.cpu, a.memory, a.abandoned, a.errors,
		a.fnSelf, a.epFnSelf, a.fnWall, a.fnDuration, a.sqlDuration, a.sqlSeconds, a.sqlCalls, a.queryInfo)
	return a
}

// ResolveEndpoint returns the project and endpoint labels a request will be
// counted under, creating the endpoint's series so that it is known to the
// in-flight gauges before the request ends.
func (a *Aggregator) ResolveEndpoint(project, endpoint string, now time.Time) endpointKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	project, ps := a.projects.Get(project, now)
	endpoint, _ = ps.endpoint(endpoint, now)
	return endpointKey{project, endpoint}
}

// ResolveProject returns the project label value name is counted under.
func (a *Aggregator) ResolveProject(name string, now time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	name, _ = a.projects.Get(name, now)
	return name
}

// Abandoned counts one abandoned request of k (as ResolveEndpoint gave it).
func (a *Aggregator) Abandoned(k endpointKey, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ps := a.projects.Get(k.project, now)
	_, es := ps.endpoint(k.endpoint, now)
	es.abandoned.Inc()
}

// ApplyEnd aggregates a finished request. fps holds the fingerprints of
// m.SQL, computed by the caller outside the lock because a cache miss runs
// the SQL parser.
func (a *Aggregator) ApplyEnd(m *protocol.Message, fps []sqlfp.Result, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	project, ps := a.projects.Get(m.Project, now)
	endpoint, es := ps.endpoint(m.Endpoint, now)

	rk := [2]string{normalizeMethod(m.Method), statusClass(m)}
	c, ok := es.requests[rk]
	if !ok {
		c = a.requests.WithLabelValues(project, endpoint, rk[0], rk[1])
		es.requests[rk] = c
	}
	c.Inc()
	es.duration.Observe(m.Wall)
	es.cpu.Add(m.CPUUser + m.CPUSys)
	if m.MemPeak > 0 {
		es.memory.Observe(float64(m.MemPeak))
	}
	for i := range m.Errors {
		a.countError(project, endpoint, es, errorKind(&m.Errors[i]))
	}
	if m.Fatal {
		a.countError(project, endpoint, es, "fatal")
	}

	for i := range m.Functions {
		f := &m.Functions[i]
		name, fs := ps.functions.Get(f.Name, now)
		fs.self.Add(f.Self)
		fs.window += f.Self
		if fs.hist != nil {
			fs.hist.Observe(f.Inclusive)
		}
		if i < EndpointFunctionsPerRequest { // fn is sorted, heaviest first
			_, c := ps.endpointFuncs.Get(pair{endpoint, name}, now)
			c.Add(f.Self)
		}
	}
	for i := range m.WallFunctions {
		w := &m.WallFunctions[i]
		_, c := ps.wallFuncs.Get(pair{w.Function, w.Caller}, now)
		c.Add(w.Seconds)
	}

	for i := range m.SQL {
		s := &m.SQL[i]
		fp, qs := a.query(ps, fps[i].Fingerprint, fps[i].Normalized, now)
		if qs.hist != nil {
			qs.hist.Observe(s.Duration)
		}
		qs.window += s.Duration
		_, eq := ps.endpointQueries.Get(pair{endpoint, fp}, now)
		eq.seconds.Add(s.Duration)
		eq.calls.Inc()
	}
	if m.SQLDropped > 0 {
		a.self.phpSQLDropped.WithLabelValues(project).Add(float64(m.SQLDropped))
	}
}

func (a *Aggregator) countError(project, endpoint string, es *endpointSeries, kind string) {
	if es.errors == nil {
		es.errors = make(map[string]prometheus.Counter, 1)
	}
	c, ok := es.errors[kind]
	if !ok {
		c = a.errors.WithLabelValues(project, endpoint, kind)
		es.errors[kind] = c
	}
	c.Inc()
}

// Expire removes series idle since before cutoff. Endpoints with requests in
// flight are kept however long those run; a project goes with its last
// series.
func (a *Aggregator) Expire(cutoff time.Time, inflight map[endpointKey]InflightCounts) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for project, ps := range a.projects.All() {
		ps.endpoints.Expire(cutoff, func(name string, _ *endpointSeries) bool {
			return inflight[endpointKey{project, name}].InFlight > 0
		})
		ps.functions.Expire(cutoff, nil)
		ps.queries.Expire(cutoff, nil)
		ps.endpointQueries.Expire(cutoff, nil)
		ps.endpointFuncs.Expire(cutoff, nil)
		ps.wallFuncs.Expire(cutoff, nil)
	}
	a.projects.Expire(cutoff, func(_ string, ps *projectState) bool { return !ps.empty() })
}

// SeriesCounts returns the label values held, by kind, for the agent's self
// metrics.
func (a *Aggregator) SeriesCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{"project": a.projects.Len()}
	for _, ps := range a.projects.All() {
		out["endpoint"] += ps.endpoints.Len()
		out["function"] += ps.functions.Len()
		out["query_fp"] += ps.queries.Len()
		out["endpoint_query"] += ps.endpointQueries.Len()
		out["endpoint_function"] += ps.endpointFuncs.Len()
		out["function_caller"] += ps.wallFuncs.Len()
		out["function_histogram"] += ps.fnHists
		out["query_histogram"] += ps.queryHists
	}
	return out
}

// endpointKeys returns every endpoint series key, for the in-flight gauges.
func (a *Aggregator) endpointKeys() []endpointKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []endpointKey
	for project, ps := range a.projects.All() {
		for name := range ps.endpoints.All() {
			out = append(out, endpointKey{project, name})
		}
	}
	return out
}
