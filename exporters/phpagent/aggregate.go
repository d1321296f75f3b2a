package phpagent

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/protocol"
	"github.com/bitville/bitville-apm/internal/sqlfp"
)

// Overflow is the label value that stands for every value past a limit.
const Overflow = "other"

// Histogram buckets. They are fixed and the same on every host so that
// histograms from many hosts can be summed; see docs/metrics.md.
var (
	RequestBuckets  = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	FunctionBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	SQLBuckets      = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	MemoryBuckets   = prometheus.ExponentialBuckets(1<<20, 2, 11) // 1 MiB … 1 GiB
)

type endpointKey struct{ project, endpoint string }

type endpointSeries struct {
	duration, memory prometheus.Observer
	cpu, abandoned   prometheus.Counter
	requests         map[[2]string]prometheus.Counter // method, status class
	errors           map[string]prometheus.Counter    // error kind
	lastSeen         time.Time
}

type functionSeries struct {
	self     prometheus.Counter
	hist     prometheus.Observer // nil unless the function ranks in the top K
	lastSeen time.Time
	window   float64 // self seconds since the last ranking
	score    float64 // decayed self seconds, what ranking sorts by
}

type querySeries struct {
	hist     prometheus.Observer // nil unless the query ranks in the top K
	lastSeen time.Time
	window   float64
	score    float64
}

type endpointQuerySeries struct {
	seconds, calls prometheus.Counter
	lastSeen       time.Time
}

type endpointFunctionSeries struct {
	self     prometheus.Counter
	lastSeen time.Time
}

// EndpointFunctionsPerRequest is how many of a request's functions (the
// heaviest by self time) are also counted by endpoint: enough to show what
// an endpoint spends its time in, without a series per endpoint for every
// function any request touched.
const EndpointFunctionsPerRequest = 10

type projectState struct {
	endpoints       map[string]*endpointSeries
	functions       map[string]*functionSeries
	queries         map[string]*querySeries
	endpointQueries map[[2]string]*endpointQuerySeries
	endpointFuncs   map[[2]string]*endpointFunctionSeries
	fnHists         int
	queryHists      int
	lastSeen        time.Time
}

type queryInfo struct {
	text string
	refs int // projects whose query series carry this fingerprint
}

// Aggregator turns decoded messages into the agent's metrics, within the
// configured label limits. It is safe for concurrent use: readers call
// Apply* concurrently, the scrape calls Collect, and a janitor calls Expire
// and Rank.
type Aggregator struct {
	mu       sync.Mutex
	limits   Limits
	projects map[string]*projectState
	infos    map[string]*queryInfo

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	cpu         *prometheus.CounterVec
	memory      *prometheus.HistogramVec
	abandoned   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	fnSelf      *prometheus.CounterVec
	epFnSelf    *prometheus.CounterVec
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
		limits:   limits,
		projects: make(map[string]*projectState),
		infos:    make(map[string]*queryInfo),
		self:     self,

		requests:    counter("bitville_php_requests_total", "Finished PHP requests and CLI runs.", "project", "endpoint", "method", "status"),
		duration:    hist("bitville_php_request_duration_seconds", "Wall time of finished requests.", RequestBuckets, "project", "endpoint"),
		cpu:         counter("bitville_php_request_cpu_seconds_total", "CPU time (user+system) of finished requests.", "project", "endpoint"),
		memory:      hist("bitville_php_request_memory_peak_bytes", "Peak PHP memory of finished requests.", MemoryBuckets, "project", "endpoint"),
		abandoned:   counter("bitville_php_requests_abandoned_total", "Requests that started and never finished (worker killed, crashed or lost its end message).", "project", "endpoint"),
		errors:      counter("bitville_php_errors_total", "PHP errors, warnings and exceptions reported by finished requests, by kind.", "project", "endpoint", "kind"),
		fnSelf:      counter("bitville_php_function_self_seconds_total", "Self time of PHP functions from the sampling profiler.", "project", "function"),
		epFnSelf:    counter("bitville_php_endpoint_function_self_seconds_total", "Self time of each request's heaviest functions (sampling profiler), by endpoint.", "project", "endpoint", "function"),
		fnDuration:  hist("bitville_php_function_duration_seconds", "Per-request inclusive time of the top functions by self time.", FunctionBuckets, "project", "function"),
		sqlDuration: hist("bitville_php_sql_duration_seconds", "Duration of SQL statements of the top queries by total time, as PHP saw it.", SQLBuckets, "project", "query_fp"),
		sqlSeconds:  counter("bitville_php_sql_seconds_total", "Time PHP spent in SQL statements, by endpoint and query fingerprint.", "project", "endpoint", "query_fp"),
		sqlCalls:    counter("bitville_php_sql_calls_total", "SQL statements PHP ran, by endpoint and query fingerprint.", "project", "endpoint", "query_fp"),
		queryInfo:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bitville_sql_query_info", Help: "Normalised text of a query fingerprint (value is always 1)."}, []string{"query_fp", "query"}),
	}
	reg.MustRegister(a.requests, a.duration, a.cpu, a.memory, a.abandoned, a.errors,
		a.fnSelf, a.epFnSelf, a.fnDuration, a.sqlDuration, a.sqlSeconds, a.sqlCalls, a.queryInfo)
	return a
}

// MaxQueryLabelLen bounds the normalised text in bitville_sql_query_info.
const MaxQueryLabelLen = 300

// project returns the state of name, or of Overflow past the limit.
// Called with a.mu held.
func (a *Aggregator) project(name string, now time.Time) (string, *projectState) {
	ps, ok := a.projects[name]
	if !ok {
		if name != Overflow && len(a.projects) >= a.limits.Projects {
			a.self.overflow.WithLabelValues("project").Inc()
			name = Overflow
			ps = a.projects[name]
		}
		if ps == nil {
			ps = &projectState{
				endpoints:       make(map[string]*endpointSeries),
				functions:       make(map[string]*functionSeries),
				queries:         make(map[string]*querySeries),
				endpointQueries: make(map[[2]string]*endpointQuerySeries),
				endpointFuncs:   make(map[[2]string]*endpointFunctionSeries),
			}
			a.projects[name] = ps
			// The PHP side's loss counters exist from the project's first
			// message, so that increase() sees their first increment.
			a.self.phpSendFails.WithLabelValues(name)
			a.self.phpSQLDropped.WithLabelValues(name)
			a.self.phpTruncated.WithLabelValues(name)
		}
	}
	ps.lastSeen = now
	return name, ps
}

// countable is how many entries of m count against a limit: the overflow
// entry itself does not.
func countable[V any](m map[string]V) int {
	if _, ok := m[Overflow]; ok {
		return len(m) - 1
	}
	return len(m)
}

func (a *Aggregator) endpoint(project string, ps *projectState, name string, now time.Time) (string, *endpointSeries) {
	if name == "" {
		name = "unknown"
	}
	es, ok := ps.endpoints[name]
	if !ok {
		if name != Overflow && countable(ps.endpoints) >= a.limits.Endpoints {
			a.self.overflow.WithLabelValues("endpoint").Inc()
			name = Overflow
			es = ps.endpoints[name]
		}
		if es == nil {
			es = &endpointSeries{
				duration:  a.duration.WithLabelValues(project, name),
				memory:    a.memory.WithLabelValues(project, name),
				cpu:       a.cpu.WithLabelValues(project, name),
				abandoned: a.abandoned.WithLabelValues(project, name),
				requests:  make(map[[2]string]prometheus.Counter, 2),
			}
			ps.endpoints[name] = es
		}
	}
	es.lastSeen = now
	return name, es
}

func (a *Aggregator) function(project string, ps *projectState, name string, now time.Time) (string, *functionSeries) {
	fs, ok := ps.functions[name]
	if !ok {
		if name != Overflow && countable(ps.functions) >= a.limits.Functions {
			a.self.overflow.WithLabelValues("function").Inc()
			name = Overflow
			fs = ps.functions[name]
		}
		if fs == nil {
			fs = &functionSeries{self: a.fnSelf.WithLabelValues(project, name)}
			// Until the first ranking, the first functions seen get the
			// histograms; ranking then moves them to the heaviest.
			if name != Overflow && ps.fnHists < a.limits.TopFunctions {
				fs.hist = a.fnDuration.WithLabelValues(project, name)
				ps.fnHists++
			}
			ps.functions[name] = fs
		}
	}
	fs.lastSeen = now
	return name, fs
}

func (a *Aggregator) query(project string, ps *projectState, r sqlfp.Result, now time.Time) (string, *querySeries) {
	fp := r.Fingerprint
	qs, ok := ps.queries[fp]
	if !ok {
		if countable(ps.queries) >= a.limits.Queries {
			a.self.overflow.WithLabelValues("query_fp").Inc()
			fp = Overflow
			qs = ps.queries[fp]
		}
		if qs == nil {
			qs = &querySeries{}
			if fp != Overflow {
				if ps.queryHists < a.limits.TopQueries {
					qs.hist = a.sqlDuration.WithLabelValues(project, fp)
					ps.queryHists++
				}
				a.addQueryInfo(fp, r.Normalized)
			}
			ps.queries[fp] = qs
		}
	}
	qs.lastSeen = now
	return fp, qs
}

func (a *Aggregator) addQueryInfo(fp, normalized string) {
	if qi, ok := a.infos[fp]; ok {
		qi.refs++
		return
	}
	text := labelset.Truncate(normalized, MaxQueryLabelLen)
	a.infos[fp] = &queryInfo{text: text, refs: 1}
	a.queryInfo.WithLabelValues(fp, text).Set(1)
}

func (a *Aggregator) dropQueryInfo(fp string) {
	qi, ok := a.infos[fp]
	if !ok {
		return
	}
	if qi.refs--; qi.refs <= 0 {
		a.queryInfo.DeleteLabelValues(fp, qi.text)
		delete(a.infos, fp)
	}
}

func (a *Aggregator) endpointQuery(project string, ps *projectState, endpoint, fp string, now time.Time) *endpointQuerySeries {
	k := [2]string{endpoint, fp}
	eq, ok := ps.endpointQueries[k]
	if !ok {
		if fp != Overflow && len(ps.endpointQueries) >= a.limits.EndpointQueries {
			a.self.overflow.WithLabelValues("endpoint_query").Inc()
			k[1] = Overflow
			eq = ps.endpointQueries[k]
		}
		if eq == nil {
			eq = &endpointQuerySeries{
				seconds: a.sqlSeconds.WithLabelValues(project, k[0], k[1]),
				calls:   a.sqlCalls.WithLabelValues(project, k[0], k[1]),
			}
			ps.endpointQueries[k] = eq
		}
	}
	eq.lastSeen = now
	return eq
}

// endpointFunction returns the series of (endpoint, function), where
// function is already the function's label (possibly "other").
func (a *Aggregator) endpointFunction(project string, ps *projectState, endpoint, function string, now time.Time) *endpointFunctionSeries {
	k := [2]string{endpoint, function}
	ef, ok := ps.endpointFuncs[k]
	if !ok {
		if function != Overflow && len(ps.endpointFuncs) >= a.limits.EndpointFunctions {
			a.self.overflow.WithLabelValues("endpoint_function").Inc()
			k[1] = Overflow
			ef = ps.endpointFuncs[k]
		}
		if ef == nil {
			ef = &endpointFunctionSeries{self: a.epFnSelf.WithLabelValues(project, k[0], k[1])}
			ps.endpointFuncs[k] = ef
		}
	}
	ef.lastSeen = now
	return ef
}

// ResolveEndpoint returns the project and endpoint labels a request will be
// counted under, creating the endpoint's series so that it is known to the
// in-flight gauges before the request ends.
func (a *Aggregator) ResolveEndpoint(project, endpoint string, now time.Time) endpointKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	project, ps := a.project(project, now)
	endpoint, _ = a.endpoint(project, ps, endpoint, now)
	return endpointKey{project, endpoint}
}

// ResolveProject returns the project label value name is counted under.
func (a *Aggregator) ResolveProject(name string, now time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	name, _ = a.project(name, now)
	return name
}

// Abandoned counts one abandoned request of k (as ResolveEndpoint gave it).
func (a *Aggregator) Abandoned(k endpointKey, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	project, ps := a.project(k.project, now)
	_, es := a.endpoint(project, ps, k.endpoint, now)
	es.abandoned.Inc()
}

// ApplyEnd aggregates a finished request. fps holds the fingerprints of
// m.SQL, computed by the caller outside the lock because a cache miss runs
// the SQL parser.
func (a *Aggregator) ApplyEnd(m *protocol.Message, fps []sqlfp.Result, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	project, ps := a.project(m.Project, now)
	endpoint, es := a.endpoint(project, ps, m.Endpoint, now)

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
		a.countError(project, endpoint, es, errorKind(m.Errors[i].Type))
	}
	if m.Fatal {
		a.countError(project, endpoint, es, "fatal")
	}

	for i := range m.Functions {
		f := &m.Functions[i]
		name, fs := a.function(project, ps, f.Name, now)
		fs.self.Add(f.Self)
		fs.window += f.Self
		if fs.hist != nil {
			fs.hist.Observe(f.Inclusive)
		}
		if i < EndpointFunctionsPerRequest { // fn is sorted, heaviest first
			a.endpointFunction(project, ps, endpoint, name, now).self.Add(f.Self)
		}
	}

	for i := range m.SQL {
		s := &m.SQL[i]
		fp, qs := a.query(project, ps, fps[i], now)
		if qs.hist != nil {
			qs.hist.Observe(s.Duration)
		}
		qs.window += s.Duration
		eq := a.endpointQuery(project, ps, endpoint, fp, now)
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

// Rank gives the duration histograms to the top-K functions and queries of
// each project by decayed self time, so that the histograms follow what is
// expensive now. A histogram is taken away only from an item that falls out
// of the top 2·K, so items near the boundary do not flap: each project holds
// at most 2·K histograms of each kind.
func (a *Aggregator) Rank() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for project, ps := range a.projects {
		rankItems(ps.functions, a.limits.TopFunctions, &ps.fnHists,
			func(fs *functionSeries) *float64 { return &fs.window },
			func(fs *functionSeries) *float64 { return &fs.score },
			func(name string, fs *functionSeries, on bool) {
				if on {
					fs.hist = a.fnDuration.WithLabelValues(project, name)
				} else {
					fs.hist = nil
					a.fnDuration.DeleteLabelValues(project, name)
				}
			},
			func(fs *functionSeries) bool { return fs.hist != nil })
		rankItems(ps.queries, a.limits.TopQueries, &ps.queryHists,
			func(qs *querySeries) *float64 { return &qs.window },
			func(qs *querySeries) *float64 { return &qs.score },
			func(fp string, qs *querySeries, on bool) {
				if on {
					qs.hist = a.sqlDuration.WithLabelValues(project, fp)
				} else {
					qs.hist = nil
					a.sqlDuration.DeleteLabelValues(project, fp)
				}
			},
			func(qs *querySeries) bool { return qs.hist != nil })
	}
}

func rankItems[S any](items map[string]S, k int, held *int, window, score func(S) *float64, set func(string, S, bool), has func(S) bool) {
	type ranked struct {
		name  string
		score float64
	}
	all := make([]ranked, 0, len(items))
	for name, it := range items {
		s := score(it)
		*s = *s/2 + *window(it)
		*window(it) = 0
		if name != Overflow {
			all = append(all, ranked{name, *s})
		}
	}
	slices.SortFunc(all, func(x, y ranked) int {
		if c := cmp.Compare(y.score, x.score); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	for i, r := range all {
		it := items[r.name]
		switch {
		case i < k && !has(it):
			set(r.name, it, true)
			*held++
		case i >= 2*k && has(it):
			set(r.name, it, false)
			*held--
		}
	}
}

// Expire removes series idle since before cutoff. Endpoints with requests in
// flight are kept however long those run.
func (a *Aggregator) Expire(cutoff time.Time, inflight map[endpointKey]InflightCounts) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for project, ps := range a.projects {
		for name, es := range ps.endpoints {
			if !es.lastSeen.Before(cutoff) || inflight[endpointKey{project, name}].InFlight > 0 {
				continue
			}
			a.duration.DeleteLabelValues(project, name)
			a.memory.DeleteLabelValues(project, name)
			a.cpu.DeleteLabelValues(project, name)
			a.abandoned.DeleteLabelValues(project, name)
			for rk := range es.requests {
				a.requests.DeleteLabelValues(project, name, rk[0], rk[1])
			}
			for kind := range es.errors {
				a.errors.DeleteLabelValues(project, name, kind)
			}
			delete(ps.endpoints, name)
			a.self.expired.WithLabelValues("endpoint").Inc()
		}
		for name, fs := range ps.functions {
			if !fs.lastSeen.Before(cutoff) {
				continue
			}
			a.fnSelf.DeleteLabelValues(project, name)
			if fs.hist != nil {
				a.fnDuration.DeleteLabelValues(project, name)
				ps.fnHists--
			}
			delete(ps.functions, name)
			a.self.expired.WithLabelValues("function").Inc()
		}
		for fp, qs := range ps.queries {
			if !qs.lastSeen.Before(cutoff) {
				continue
			}
			if qs.hist != nil {
				a.sqlDuration.DeleteLabelValues(project, fp)
				ps.queryHists--
			}
			a.dropQueryInfo(fp)
			delete(ps.queries, fp)
			a.self.expired.WithLabelValues("query_fp").Inc()
		}
		for k, eq := range ps.endpointQueries {
			if !eq.lastSeen.Before(cutoff) {
				continue
			}
			a.sqlSeconds.DeleteLabelValues(project, k[0], k[1])
			a.sqlCalls.DeleteLabelValues(project, k[0], k[1])
			delete(ps.endpointQueries, k)
			a.self.expired.WithLabelValues("endpoint_query").Inc()
		}
		for k, ef := range ps.endpointFuncs {
			if !ef.lastSeen.Before(cutoff) {
				continue
			}
			a.epFnSelf.DeleteLabelValues(project, k[0], k[1])
			delete(ps.endpointFuncs, k)
			a.self.expired.WithLabelValues("endpoint_function").Inc()
		}
		if len(ps.endpoints)+len(ps.functions)+len(ps.queries)+len(ps.endpointQueries)+len(ps.endpointFuncs) == 0 && ps.lastSeen.Before(cutoff) {
			delete(a.projects, project)
			a.self.expired.WithLabelValues("project").Inc()
		}
	}
}

// SeriesCounts returns the label values held, by kind, for the agent's self
// metrics.
func (a *Aggregator) SeriesCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{"project": len(a.projects)}
	for _, ps := range a.projects {
		out["endpoint"] += len(ps.endpoints)
		out["function"] += len(ps.functions)
		out["query_fp"] += len(ps.queries)
		out["endpoint_query"] += len(ps.endpointQueries)
		out["endpoint_function"] += len(ps.endpointFuncs)
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
	for project, ps := range a.projects {
		for name := range ps.endpoints {
			out = append(out, endpointKey{project, name})
		}
	}
	return out
}

var knownMethods = map[string]string{
	"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH",
	"DELETE": "DELETE", "OPTIONS": "OPTIONS", "CONNECT": "CONNECT", "TRACE": "TRACE", "CLI": "CLI",
}

// normalizeMethod bounds the method label: anything but the standard
// methods and CLI is "other".
func normalizeMethod(m string) string {
	if v, ok := knownMethods[m]; ok {
		return v
	}
	if v, ok := knownMethods[strings.ToUpper(m)]; ok {
		return v
	}
	return Overflow
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// statusClass is the status label: the HTTP status class, or for CLI runs
// "ok" or "error" from the exit code.
func statusClass(m *protocol.Message) string {
	if m.Method == "CLI" || m.SAPI == "cli" {
		if m.Fatal || (m.HasExit && m.Exit != 0) {
			return "error"
		}
		return "ok"
	}
	if m.Status >= 100 && m.Status < 600 {
		return statusClasses[m.Status/100-1]
	}
	return "unknown"
}

// errorKind maps a PHP error type or exception class to a bounded kind.
func errorKind(t string) string {
	switch t {
	case "E_ERROR", "E_CORE_ERROR", "E_COMPILE_ERROR", "E_USER_ERROR", "E_RECOVERABLE_ERROR", "E_PARSE":
		return "error"
	case "E_WARNING", "E_CORE_WARNING", "E_COMPILE_WARNING", "E_USER_WARNING":
		return "warning"
	case "E_NOTICE", "E_USER_NOTICE", "E_STRICT":
		return "notice"
	case "E_DEPRECATED", "E_USER_DEPRECATED":
		return "deprecated"
	}
	return "exception"
}
