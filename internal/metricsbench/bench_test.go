package metricsbench

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func init() {
	// client_golang always writes # HELP / # TYPE; make VictoriaMetrics do the
	// same so that both renders carry the same information (Prometheus needs
	// TYPE to know that *_bucket lines form a histogram).
	vm.ExposeMetadata(true)
}

// ---------------------------------------------------------------------------
// Metric definitions shared by both implementations.

const (
	nameRequests    = "bitville_php_requests_total"
	nameReqDuration = "bitville_php_request_duration_seconds"
	nameReqCPU      = "bitville_php_request_cpu_seconds_total"
	nameReqMemPeak  = "bitville_php_request_memory_peak_bytes"
	nameFnSelf      = "bitville_php_function_self_seconds_total"
	nameFnDuration  = "bitville_php_function_duration_seconds"
	nameSQLDuration = "bitville_php_sql_duration_seconds"
	nameSQLSeconds  = "bitville_php_sql_seconds_total"
	nameSQLCalls    = "bitville_php_sql_calls_total"
)

// secondsBuckets are the classic le upper bounds for all duration histograms.
var secondsBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// bytesBuckets are powers of two from 1 MiB to 1 GiB.
var bytesBuckets = func() []float64 {
	var b []float64
	for s := 20; s <= 30; s++ {
		b = append(b, float64(uint64(1)<<s))
	}
	return b
}()

// ---------------------------------------------------------------------------
// Workload: pre-generated "end" messages, as the daemon would have them after
// decoding (all label values are already strings).

type fnSample struct {
	name      string
	self, dur float64
}

type sqlSample struct {
	fp  string
	dur float64
}

type endMsg struct {
	project, endpoint, method, status string
	dur, cpu, mem                     float64
	fns                               []fnSample
	sqls                              []sqlSample
}

type workloadConfig struct {
	projects, endpoints, functions, queries int
	fnsPerEndpoint, queriesPerEndpoint      int // distinct functions / queries one endpoint uses
	fnsPerMsg, sqlPerMsg                    int
	messages                                int
	seed                                    uint64
}

// benchConfig: 200 endpoints, 2,000 functions, 500 query fingerprints;
// 50 functions and 20 SQL statements per message. Each endpoint touches its
// own fixed subset of functions and queries, so {endpoint,query_fp} stays at
// 200*30 = 6,000 series rather than the full cross product.
var benchConfig = workloadConfig{
	projects: 1, endpoints: 200, functions: 2000, queries: 500,
	fnsPerEndpoint: 120, queriesPerEndpoint: 30,
	fnsPerMsg: 50, sqlPerMsg: 20,
	messages: 4096, seed: 20240601,
}

func lognormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

func genWorkload(c workloadConfig) []endMsg {
	r := rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15))
	projects := make([]string, c.projects)
	for i := range projects {
		projects[i] = fmt.Sprintf("shop-%d", i)
	}
	// PHP function names contain backslashes, which must be escaped in the
	// exposition format.
	fnNames := make([]string, c.functions)
	for i := range fnNames {
		fnNames[i] = fmt.Sprintf(`App\Domain\Mod%02d\Service%04d::execute`, i%37, i)
	}
	fps := make([]string, c.queries)
	for i := range fps {
		fps[i] = fmt.Sprintf("%016x", r.Uint64())
	}
	type endpoint struct {
		path    string
		methods []string
		fns     []int
		queries []int
	}
	eps := make([]endpoint, c.endpoints)
	for i := range eps {
		e := &eps[i]
		e.path = fmt.Sprintf("/api/v1/res%03d/{id}", i)
		switch r.IntN(3) {
		case 0:
			e.methods = []string{"GET"}
		case 1:
			e.methods = []string{"POST"}
		default:
			e.methods = []string{"GET", "PUT"}
		}
		e.fns = r.Perm(c.functions)[:c.fnsPerEndpoint]
		e.queries = r.Perm(c.queries)[:c.queriesPerEndpoint]
	}
	statuses := []string{"200", "200", "200", "200", "200", "200", "200", "201", "302", "404", "500"}

	msgs := make([]endMsg, c.messages)
	for i := range msgs {
		e := &eps[r.IntN(len(eps))]
		m := &msgs[i]
		m.project = projects[r.IntN(len(projects))]
		m.endpoint = e.path
		m.method = e.methods[r.IntN(len(e.methods))]
		m.status = statuses[r.IntN(len(statuses))]
		m.dur = lognormal(r, 0.05, 1.0)
		m.cpu = m.dur * (0.2 + 0.7*r.Float64())
		m.mem = math.Round(lognormal(r, 8<<20, 0.8))
		m.fns = make([]fnSample, c.fnsPerMsg)
		pick := r.Perm(len(e.fns))
		for j := range m.fns {
			d := lognormal(r, 0.0005, 1.5)
			m.fns[j] = fnSample{name: fnNames[e.fns[pick[j]]], self: d * r.Float64(), dur: d}
		}
		m.sqls = make([]sqlSample, c.sqlPerMsg)
		for j := range m.sqls {
			// Repeats allowed: N+1 query patterns are common.
			m.sqls[j] = sqlSample{fp: fps[e.queries[r.IntN(len(e.queries))]], dur: lognormal(r, 0.002, 1.2)}
		}
	}
	return msgs
}

var benchMessages = sync.OnceValue(func() []endMsg { return genWorkload(benchConfig) })

// Cache keys: small structs of strings, as the daemon's series table uses.
type (
	reqKey   struct{ project, endpoint, method, status string }
	epKey    struct{ project, endpoint string }
	fnKey    struct{ project, function string }
	queryKey struct{ project, fp string }
	sqlEpKey struct{ project, endpoint, fp string }
)

// ---------------------------------------------------------------------------
// client_golang

type cgMetrics struct {
	requests, reqCPU, fnSelf, sqlSeconds, sqlCalls *prometheus.CounterVec
	reqDur, reqMem, fnDur, sqlDur                  *prometheus.HistogramVec
}

// newCGMetrics registers the metric families on reg. With native set, the
// histograms additionally maintain native (sparse) buckets next to the
// classic ones.
func newCGMetrics(reg prometheus.Registerer, native bool) *cgMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		opts := prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}
		if native {
			opts.NativeHistogramBucketFactor = 1.1
			opts.NativeHistogramMaxBucketNumber = 160
			opts.NativeHistogramMinResetDuration = time.Hour
		}
		v := prometheus.NewHistogramVec(opts, labels)
		reg.MustRegister(v)
		return v
	}
	return &cgMetrics{
		requests:   counter(nameRequests, "PHP requests.", "project", "endpoint", "method", "status"),
		reqDur:     hist(nameReqDuration, "PHP request wall time.", secondsBuckets, "project", "endpoint"),
		reqCPU:     counter(nameReqCPU, "PHP request CPU time.", "project", "endpoint"),
		reqMem:     hist(nameReqMemPeak, "PHP request peak memory.", bytesBuckets, "project", "endpoint"),
		fnSelf:     counter(nameFnSelf, "Function self time.", "project", "function"),
		fnDur:      hist(nameFnDuration, "Function inclusive time.", secondsBuckets, "project", "function"),
		sqlDur:     hist(nameSQLDuration, "SQL statement time.", secondsBuckets, "project", "query_fp"),
		sqlSeconds: counter(nameSQLSeconds, "SQL time per endpoint.", "project", "endpoint", "query_fp"),
		sqlCalls:   counter(nameSQLCalls, "SQL calls per endpoint.", "project", "endpoint", "query_fp"),
	}
}

// apply is the naive path: WithLabelValues for every single update.
func (m *cgMetrics) apply(msg *endMsg) {
	m.requests.WithLabelValues(msg.project, msg.endpoint, msg.method, msg.status).Inc()
	m.reqDur.WithLabelValues(msg.project, msg.endpoint).Observe(msg.dur)
	m.reqCPU.WithLabelValues(msg.project, msg.endpoint).Add(msg.cpu)
	m.reqMem.WithLabelValues(msg.project, msg.endpoint).Observe(msg.mem)
	for i := range msg.fns {
		f := &msg.fns[i]
		m.fnSelf.WithLabelValues(msg.project, f.name).Add(f.self)
		m.fnDur.WithLabelValues(msg.project, f.name).Observe(f.dur)
	}
	for i := range msg.sqls {
		s := &msg.sqls[i]
		m.sqlDur.WithLabelValues(msg.project, s.fp).Observe(s.dur)
		m.sqlSeconds.WithLabelValues(msg.project, msg.endpoint, s.fp).Add(s.dur)
		m.sqlCalls.WithLabelValues(msg.project, msg.endpoint, s.fp).Inc()
	}
}

type cgEndpoint struct {
	dur, mem prometheus.Observer
	cpu      prometheus.Counter
}

type cgFunction struct {
	self prometheus.Counter
	dur  prometheus.Observer
}

type cgSQLEndpoint struct{ seconds, calls prometheus.Counter }

// cgCache is the daemon-side series table: label tuple -> handles.
type cgCache struct {
	m         *cgMetrics
	mu        sync.RWMutex
	requests  map[reqKey]prometheus.Counter
	endpoints map[epKey]*cgEndpoint
	functions map[fnKey]*cgFunction
	queries   map[queryKey]prometheus.Observer
	sqlEps    map[sqlEpKey]*cgSQLEndpoint
}

func newCGCache(m *cgMetrics) *cgCache {
	return &cgCache{
		m:         m,
		requests:  map[reqKey]prometheus.Counter{},
		endpoints: map[epKey]*cgEndpoint{},
		functions: map[fnKey]*cgFunction{},
		queries:   map[queryKey]prometheus.Observer{},
		sqlEps:    map[sqlEpKey]*cgSQLEndpoint{},
	}
}

// cgHandles is per-goroutine scratch holding the handles resolved for one
// message; it is reused so the steady state does not allocate.
type cgHandles struct {
	req     prometheus.Counter
	ep      *cgEndpoint
	fns     []*cgFunction
	queries []prometheus.Observer
	sqlEps  []*cgSQLEndpoint
}

// resolve fills h. With create=false (read lock held) it reports false on
// the first missing entry; with create=true (write lock held) it creates it.
func (c *cgCache) resolve(msg *endMsg, h *cgHandles, create bool) bool {
	var ok bool
	rk := reqKey{msg.project, msg.endpoint, msg.method, msg.status}
	if h.req, ok = c.requests[rk]; !ok {
		if !create {
			return false
		}
		h.req = c.m.requests.WithLabelValues(rk.project, rk.endpoint, rk.method, rk.status)
		c.requests[rk] = h.req
	}
	ek := epKey{msg.project, msg.endpoint}
	if h.ep, ok = c.endpoints[ek]; !ok {
		if !create {
			return false
		}
		h.ep = &cgEndpoint{
			dur: c.m.reqDur.WithLabelValues(ek.project, ek.endpoint),
			cpu: c.m.reqCPU.WithLabelValues(ek.project, ek.endpoint),
			mem: c.m.reqMem.WithLabelValues(ek.project, ek.endpoint),
		}
		c.endpoints[ek] = h.ep
	}
	h.fns = h.fns[:0]
	for i := range msg.fns {
		fk := fnKey{msg.project, msg.fns[i].name}
		f, ok := c.functions[fk]
		if !ok {
			if !create {
				return false
			}
			f = &cgFunction{
				self: c.m.fnSelf.WithLabelValues(fk.project, fk.function),
				dur:  c.m.fnDur.WithLabelValues(fk.project, fk.function),
			}
			c.functions[fk] = f
		}
		h.fns = append(h.fns, f)
	}
	h.queries, h.sqlEps = h.queries[:0], h.sqlEps[:0]
	for i := range msg.sqls {
		qk := queryKey{msg.project, msg.sqls[i].fp}
		q, ok := c.queries[qk]
		if !ok {
			if !create {
				return false
			}
			q = c.m.sqlDur.WithLabelValues(qk.project, qk.fp)
			c.queries[qk] = q
		}
		sk := sqlEpKey{msg.project, msg.endpoint, msg.sqls[i].fp}
		s, ok := c.sqlEps[sk]
		if !ok {
			if !create {
				return false
			}
			s = &cgSQLEndpoint{
				seconds: c.m.sqlSeconds.WithLabelValues(sk.project, sk.endpoint, sk.fp),
				calls:   c.m.sqlCalls.WithLabelValues(sk.project, sk.endpoint, sk.fp),
			}
			c.sqlEps[sk] = s
		}
		h.queries = append(h.queries, q)
		h.sqlEps = append(h.sqlEps, s)
	}
	return true
}

// apply resolves all handles under one read lock per message (write lock only
// when a series is new), then updates them without holding the lock.
func (c *cgCache) apply(msg *endMsg, h *cgHandles) {
	c.mu.RLock()
	ok := c.resolve(msg, h, false)
	c.mu.RUnlock()
	if !ok {
		c.mu.Lock()
		c.resolve(msg, h, true)
		c.mu.Unlock()
	}
	h.req.Inc()
	h.ep.dur.Observe(msg.dur)
	h.ep.cpu.Add(msg.cpu)
	h.ep.mem.Observe(msg.mem)
	for i, f := range h.fns {
		f.self.Add(msg.fns[i].self)
		f.dur.Observe(msg.fns[i].dur)
	}
	for i, q := range h.queries {
		d := msg.sqls[i].dur
		q.Observe(d)
		h.sqlEps[i].seconds.Add(d)
		h.sqlEps[i].calls.Inc()
	}
}

// ---------------------------------------------------------------------------
// VictoriaMetrics/metrics

// appendEscaped appends a label value escaped per the text exposition format.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '"':
			dst = append(dst, '\\', '"')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendSeries renders name{k1="v1",k2="v2"} as VictoriaMetrics expects.
func appendSeries(dst []byte, name string, kv ...string) []byte {
	dst = append(dst, name...)
	dst = append(dst, '{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, kv[i]...)
		dst = append(dst, '=', '"')
		dst = appendEscaped(dst, kv[i+1])
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

type vmMetrics struct{ set *vm.Set }

// apply is the naive path: render the series name and GetOrCreate* for
// every single update. buf is per-goroutine scratch; string(buf) is the one
// unavoidable allocation per update because the API takes a string.
func (m vmMetrics) apply(msg *endMsg, buf *[]byte) {
	s := m.set
	b := appendSeries((*buf)[:0], nameRequests, "project", msg.project, "endpoint", msg.endpoint, "method", msg.method, "status", msg.status)
	s.GetOrCreateCounter(string(b)).Inc()
	b = appendSeries(b[:0], nameReqDuration, "project", msg.project, "endpoint", msg.endpoint)
	s.GetOrCreatePrometheusHistogramExt(string(b), secondsBuckets).Update(msg.dur)
	b = appendSeries(b[:0], nameReqCPU, "project", msg.project, "endpoint", msg.endpoint)
	s.GetOrCreateFloatCounter(string(b)).Add(msg.cpu)
	b = appendSeries(b[:0], nameReqMemPeak, "project", msg.project, "endpoint", msg.endpoint)
	s.GetOrCreatePrometheusHistogramExt(string(b), bytesBuckets).Update(msg.mem)
	for i := range msg.fns {
		f := &msg.fns[i]
		b = appendSeries(b[:0], nameFnSelf, "project", msg.project, "function", f.name)
		s.GetOrCreateFloatCounter(string(b)).Add(f.self)
		b = appendSeries(b[:0], nameFnDuration, "project", msg.project, "function", f.name)
		s.GetOrCreatePrometheusHistogramExt(string(b), secondsBuckets).Update(f.dur)
	}
	for i := range msg.sqls {
		q := &msg.sqls[i]
		b = appendSeries(b[:0], nameSQLDuration, "project", msg.project, "query_fp", q.fp)
		s.GetOrCreatePrometheusHistogramExt(string(b), secondsBuckets).Update(q.dur)
		b = appendSeries(b[:0], nameSQLSeconds, "project", msg.project, "endpoint", msg.endpoint, "query_fp", q.fp)
		s.GetOrCreateFloatCounter(string(b)).Add(q.dur)
		b = appendSeries(b[:0], nameSQLCalls, "project", msg.project, "endpoint", msg.endpoint, "query_fp", q.fp)
		s.GetOrCreateCounter(string(b)).Inc()
	}
	*buf = b
}

type vmEndpoint struct {
	dur, mem *vm.PrometheusHistogram
	cpu      *vm.FloatCounter
}

type vmFunction struct {
	self *vm.FloatCounter
	dur  *vm.PrometheusHistogram
}

type vmSQLEndpoint struct {
	seconds *vm.FloatCounter
	calls   *vm.Counter
}

type vmCache struct {
	set       *vm.Set
	mu        sync.RWMutex
	requests  map[reqKey]*vm.Counter
	endpoints map[epKey]*vmEndpoint
	functions map[fnKey]*vmFunction
	queries   map[queryKey]*vm.PrometheusHistogram
	sqlEps    map[sqlEpKey]*vmSQLEndpoint
}

func newVMCache(set *vm.Set) *vmCache {
	return &vmCache{
		set:       set,
		requests:  map[reqKey]*vm.Counter{},
		endpoints: map[epKey]*vmEndpoint{},
		functions: map[fnKey]*vmFunction{},
		queries:   map[queryKey]*vm.PrometheusHistogram{},
		sqlEps:    map[sqlEpKey]*vmSQLEndpoint{},
	}
}

type vmHandles struct {
	req     *vm.Counter
	ep      *vmEndpoint
	fns     []*vmFunction
	queries []*vm.PrometheusHistogram
	sqlEps  []*vmSQLEndpoint
}

func series(name string, kv ...string) string { return string(appendSeries(nil, name, kv...)) }

func (c *vmCache) resolve(msg *endMsg, h *vmHandles, create bool) bool {
	var ok bool
	s := c.set
	rk := reqKey{msg.project, msg.endpoint, msg.method, msg.status}
	if h.req, ok = c.requests[rk]; !ok {
		if !create {
			return false
		}
		h.req = s.GetOrCreateCounter(series(nameRequests, "project", rk.project, "endpoint", rk.endpoint, "method", rk.method, "status", rk.status))
		c.requests[rk] = h.req
	}
	ek := epKey{msg.project, msg.endpoint}
	if h.ep, ok = c.endpoints[ek]; !ok {
		if !create {
			return false
		}
		h.ep = &vmEndpoint{
			dur: s.GetOrCreatePrometheusHistogramExt(series(nameReqDuration, "project", ek.project, "endpoint", ek.endpoint), secondsBuckets),
			cpu: s.GetOrCreateFloatCounter(series(nameReqCPU, "project", ek.project, "endpoint", ek.endpoint)),
			mem: s.GetOrCreatePrometheusHistogramExt(series(nameReqMemPeak, "project", ek.project, "endpoint", ek.endpoint), bytesBuckets),
		}
		c.endpoints[ek] = h.ep
	}
	h.fns = h.fns[:0]
	for i := range msg.fns {
		fk := fnKey{msg.project, msg.fns[i].name}
		f, ok := c.functions[fk]
		if !ok {
			if !create {
				return false
			}
			f = &vmFunction{
				self: s.GetOrCreateFloatCounter(series(nameFnSelf, "project", fk.project, "function", fk.function)),
				dur:  s.GetOrCreatePrometheusHistogramExt(series(nameFnDuration, "project", fk.project, "function", fk.function), secondsBuckets),
			}
			c.functions[fk] = f
		}
		h.fns = append(h.fns, f)
	}
	h.queries, h.sqlEps = h.queries[:0], h.sqlEps[:0]
	for i := range msg.sqls {
		qk := queryKey{msg.project, msg.sqls[i].fp}
		q, ok := c.queries[qk]
		if !ok {
			if !create {
				return false
			}
			q = s.GetOrCreatePrometheusHistogramExt(series(nameSQLDuration, "project", qk.project, "query_fp", qk.fp), secondsBuckets)
			c.queries[qk] = q
		}
		sk := sqlEpKey{msg.project, msg.endpoint, msg.sqls[i].fp}
		se, ok := c.sqlEps[sk]
		if !ok {
			if !create {
				return false
			}
			se = &vmSQLEndpoint{
				seconds: s.GetOrCreateFloatCounter(series(nameSQLSeconds, "project", sk.project, "endpoint", sk.endpoint, "query_fp", sk.fp)),
				calls:   s.GetOrCreateCounter(series(nameSQLCalls, "project", sk.project, "endpoint", sk.endpoint, "query_fp", sk.fp)),
			}
			c.sqlEps[sk] = se
		}
		h.queries = append(h.queries, q)
		h.sqlEps = append(h.sqlEps, se)
	}
	return true
}

func (c *vmCache) apply(msg *endMsg, h *vmHandles) {
	c.mu.RLock()
	ok := c.resolve(msg, h, false)
	c.mu.RUnlock()
	if !ok {
		c.mu.Lock()
		c.resolve(msg, h, true)
		c.mu.Unlock()
	}
	h.req.Inc()
	h.ep.dur.Update(msg.dur)
	h.ep.cpu.Add(msg.cpu)
	h.ep.mem.Update(msg.mem)
	for i, f := range h.fns {
		f.self.Add(msg.fns[i].self)
		f.dur.Update(msg.fns[i].dur)
	}
	for i, q := range h.queries {
		d := msg.sqls[i].dur
		q.Update(d)
		h.sqlEps[i].seconds.Add(d)
		h.sqlEps[i].calls.Inc()
	}
}

// ---------------------------------------------------------------------------
// BenchmarkEndMessage

// parallelism makes RunParallel use ~4 goroutines (4 on a 2-core box).
func parallelism() int {
	return max(1, (4+runtime.GOMAXPROCS(0)-1)/runtime.GOMAXPROCS(0))
}

func reportRate(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "msgs/s")
	}
}

func runSerial(b *testing.B, msgs []endMsg, apply func(*endMsg)) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apply(&msgs[i%len(msgs)])
	}
	b.StopTimer()
	reportRate(b)
}

// runParallel gives every goroutine its own scratch (newWorker) and its own
// starting offset in the message stream.
func runParallel(b *testing.B, msgs []endMsg, newWorker func() func(*endMsg)) {
	b.ReportAllocs()
	b.SetParallelism(parallelism())
	var seq atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		apply := newWorker()
		i := int(seq.Add(1)) * 997
		for pb.Next() {
			apply(&msgs[i%len(msgs)])
			i++
		}
	})
	b.StopTimer()
	reportRate(b)
}

func BenchmarkEndMessage(b *testing.B) {
	msgs := benchMessages()

	b.Run("client_golang", func(b *testing.B) {
		m := newCGMetrics(prometheus.NewRegistry(), false)
		c := newCGCache(m)
		var warm cgHandles
		for i := range msgs { // steady state: every series already exists
			c.apply(&msgs[i], &warm)
		}
		b.Run("cached", func(b *testing.B) {
			var h cgHandles
			runSerial(b, msgs, func(msg *endMsg) { c.apply(msg, &h) })
		})
		b.Run("lookup", func(b *testing.B) {
			runSerial(b, msgs, m.apply)
		})
		b.Run("cached_parallel", func(b *testing.B) {
			runParallel(b, msgs, func() func(*endMsg) {
				h := new(cgHandles)
				return func(msg *endMsg) { c.apply(msg, h) }
			})
		})
		b.Run("lookup_parallel", func(b *testing.B) {
			runParallel(b, msgs, func() func(*endMsg) { return m.apply })
		})
		b.Run("cached_native", func(b *testing.B) {
			// Same as cached, but histograms also keep native buckets.
			cn := newCGCache(newCGMetrics(prometheus.NewRegistry(), true))
			var h cgHandles
			for i := range msgs {
				cn.apply(&msgs[i], &h)
			}
			runSerial(b, msgs, func(msg *endMsg) { cn.apply(msg, &h) })
		})
	})

	b.Run("victoriametrics", func(b *testing.B) {
		set := vm.NewSet()
		m := vmMetrics{set}
		c := newVMCache(set)
		var warm vmHandles
		for i := range msgs {
			c.apply(&msgs[i], &warm)
		}
		b.Run("cached", func(b *testing.B) {
			var h vmHandles
			runSerial(b, msgs, func(msg *endMsg) { c.apply(msg, &h) })
		})
		b.Run("lookup", func(b *testing.B) {
			var buf []byte
			runSerial(b, msgs, func(msg *endMsg) { m.apply(msg, &buf) })
		})
		b.Run("cached_parallel", func(b *testing.B) {
			runParallel(b, msgs, func() func(*endMsg) {
				h := new(vmHandles)
				return func(msg *endMsg) { c.apply(msg, h) }
			})
		})
		b.Run("lookup_parallel", func(b *testing.B) {
			runParallel(b, msgs, func() func(*endMsg) {
				buf := new([]byte)
				return func(msg *endMsg) { m.apply(msg, buf) }
			})
		})
	})
}

// ---------------------------------------------------------------------------
// Exposition fixtures

type sqlPair struct {
	endpoint, fp string
	calls        uint64
	seconds      float64
}

type expoData struct {
	project string
	pairs   []sqlPair   // counters10k: 5,000 pairs x {calls (int), seconds (float)}
	fns     []string    // histograms1k: 1,000 function_duration_seconds series
	obs     [][]float64 // observations per function
}

func genExpoData(nPairs, nFns, obsPerFn int, seed uint64) *expoData {
	r := rand.New(rand.NewPCG(seed, ^seed))
	d := &expoData{project: "shop-0"}
	const perEndpoint = 25
	for i := 0; i < nPairs; i++ {
		calls := 1 + uint64(r.IntN(100000))
		d.pairs = append(d.pairs, sqlPair{
			endpoint: fmt.Sprintf("/api/v1/res%03d/{id}", i/perEndpoint),
			fp:       fmt.Sprintf("%016x", r.Uint64()),
			calls:    calls,
			seconds:  float64(calls) * lognormal(r, 0.002, 1.0),
		})
	}
	for i := 0; i < nFns; i++ {
		d.fns = append(d.fns, fmt.Sprintf(`App\Domain\Mod%02d\Service%04d::execute`, i%37, i))
		o := make([]float64, obsPerFn)
		for j := range o {
			o[j] = lognormal(r, 0.003, 2.0) // spread over all buckets
		}
		d.obs = append(d.obs, o)
	}
	return d
}

var (
	expoCounters   = sync.OnceValue(func() *expoData { return genExpoData(5000, 0, 0, 1) })
	expoHistograms = sync.OnceValue(func() *expoData { return genExpoData(0, 1000, 50, 2) })
)

func (d *expoData) fillCG(reg prometheus.Registerer) {
	var calls, secs *prometheus.CounterVec
	var dur *prometheus.HistogramVec
	if len(d.pairs) > 0 {
		calls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: nameSQLCalls, Help: "SQL calls per endpoint."}, []string{"project", "endpoint", "query_fp"})
		secs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: nameSQLSeconds, Help: "SQL time per endpoint."}, []string{"project", "endpoint", "query_fp"})
		reg.MustRegister(calls, secs)
	}
	if len(d.fns) > 0 {
		dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: nameFnDuration, Help: "Function inclusive time.", Buckets: secondsBuckets}, []string{"project", "function"})
		reg.MustRegister(dur)
	}
	for _, p := range d.pairs {
		calls.WithLabelValues(d.project, p.endpoint, p.fp).Add(float64(p.calls))
		secs.WithLabelValues(d.project, p.endpoint, p.fp).Add(p.seconds)
	}
	for i, f := range d.fns {
		h := dur.WithLabelValues(d.project, f)
		for _, v := range d.obs[i] {
			h.Observe(v)
		}
	}
}

func (d *expoData) fillVM(set *vm.Set) {
	for _, p := range d.pairs {
		set.GetOrCreateCounter(series(nameSQLCalls, "project", d.project, "endpoint", p.endpoint, "query_fp", p.fp)).Add(int(p.calls))
		set.GetOrCreateFloatCounter(series(nameSQLSeconds, "project", d.project, "endpoint", p.endpoint, "query_fp", p.fp)).Add(p.seconds)
	}
	for i, f := range d.fns {
		h := set.GetOrCreatePrometheusHistogramExt(series(nameFnDuration, "project", d.project, "function", f), secondsBuckets)
		for _, v := range d.obs[i] {
			h.Update(v)
		}
	}
}

// metricsRequest is what a Prometheus configured for the classic text format
// sends; without Accept-Encoding, so the response is not compressed.
func metricsRequest(gzip bool) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	return req
}

func vmHandler(set *vm.Set) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		set.WritePrometheus(w)
	})
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// runRender times render and reports ms per render plus the response size.
func runRender(b *testing.B, render func() int) {
	b.ReportAllocs()
	size := render() // warm-up (and sizes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		render()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/render")
	b.ReportMetric(float64(size), "resp_bytes")
}

func BenchmarkExposition(b *testing.B) {
	fixtures := []struct {
		name string
		data func() *expoData
	}{
		{"counters10k", expoCounters},
		{"histograms1k", expoHistograms},
	}

	b.Run("client_golang", func(b *testing.B) {
		for _, fx := range fixtures {
			reg := prometheus.NewRegistry()
			fx.data().fillCG(reg)
			handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			plain, gz := metricsRequest(false), metricsRequest(true)
			b.Run(fx.name, func(b *testing.B) {
				runRender(b, func() int {
					rec := serve(handler, plain)
					if rec.Code != http.StatusOK {
						b.Fatalf("status %d", rec.Code)
					}
					return rec.Body.Len()
				})
			})
			b.Run(fx.name+"_gather_encode", func(b *testing.B) {
				var buf bytes.Buffer
				format := expfmt.NewFormat(expfmt.TypeTextPlain)
				runRender(b, func() int {
					mfs, err := reg.Gather()
					if err != nil {
						b.Fatal(err)
					}
					buf.Reset()
					enc := expfmt.NewEncoder(&buf, format)
					for _, mf := range mfs {
						if err := enc.Encode(mf); err != nil {
							b.Fatal(err)
						}
					}
					return buf.Len()
				})
			})
			b.Run(fx.name+"_http_gzip", func(b *testing.B) {
				runRender(b, func() int {
					return serve(handler, gz).Body.Len()
				})
			})
		}
	})

	b.Run("victoriametrics", func(b *testing.B) {
		for _, fx := range fixtures {
			set := vm.NewSet()
			fx.data().fillVM(set)
			handler := vmHandler(set)
			plain := metricsRequest(false)
			b.Run(fx.name, func(b *testing.B) {
				var buf bytes.Buffer
				runRender(b, func() int {
					buf.Reset()
					set.WritePrometheus(&buf)
					return buf.Len()
				})
			})
			b.Run(fx.name+"_discard", func(b *testing.B) {
				runRender(b, func() int {
					var n countingWriter
					set.WritePrometheus(&n)
					return int(n)
				})
			})
			b.Run(fx.name+"_http", func(b *testing.B) {
				runRender(b, func() int {
					return serve(handler, plain).Body.Len()
				})
			})
		}
	})
}

// countingWriter is io.Discard that remembers how much was written.
type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)

// ---------------------------------------------------------------------------
// Equivalence tests: both libraries must expose the same series and values,
// so the benchmarks compare equal work.

// flatten parses text exposition into "name{sorted labels}" -> value, with
// histograms expanded to _bucket{le}/_sum/_count samples.
func flatten(t *testing.T, text []byte) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name+labelString(m.GetLabel())] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					le := strconv.FormatFloat(bk.GetUpperBound(), 'g', -1, 64)
					out[name+"_bucket"+labelString(m.GetLabel(), "le", le)] = float64(bk.GetCumulativeCount())
				}
				out[name+"_sum"+labelString(m.GetLabel())] = h.GetSampleSum()
				out[name+"_count"+labelString(m.GetLabel())] = float64(h.GetSampleCount())
			default:
				t.Fatalf("family %s has type %v; want counter or histogram", name, mf.GetType())
			}
		}
	}
	return out
}

func labelString(pairs []*dto.LabelPair, extra ...string) string {
	var ls []string
	for _, p := range pairs {
		ls = append(ls, p.GetName()+"="+strconv.Quote(p.GetValue()))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		ls = append(ls, extra[i]+"="+strconv.Quote(extra[i+1]))
	}
	sort.Strings(ls)
	return "{" + strings.Join(ls, ",") + "}"
}

func renderCG(t *testing.T, reg *prometheus.Registry) []byte {
	t.Helper()
	rec := serve(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}), metricsRequest(false))
	if rec.Code != http.StatusOK {
		t.Fatalf("promhttp status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

func renderVM(set *vm.Set) []byte {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	return buf.Bytes()
}

func compareSeries(t *testing.T, wantName string, want map[string]float64, gotName string, got map[string]float64) {
	t.Helper()
	bad := 0
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s lacks %s (in %s = %v)", gotName, k, wantName, w)
		} else if math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			t.Errorf("%s: %s = %v, %s = %v", k, wantName, w, gotName, g)
		} else {
			continue
		}
		if bad++; bad > 10 {
			t.Fatal("too many differences")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s has extra series %s", gotName, k)
			if bad++; bad > 10 {
				t.Fatal("too many differences")
			}
		}
	}
}

func TestImplementationsAgree(t *testing.T) {
	cfg := workloadConfig{
		projects: 2, endpoints: 6, functions: 40, queries: 15,
		fnsPerEndpoint: 12, queriesPerEndpoint: 5,
		fnsPerMsg: 8, sqlPerMsg: 6,
		messages: 500, seed: 7,
	}
	msgs := genWorkload(cfg)

	cgCachedReg, cgLookupReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	cgCached := newCGCache(newCGMetrics(cgCachedReg, false))
	cgLookup := newCGMetrics(cgLookupReg, false)
	vmCachedSet, vmLookupSet := vm.NewSet(), vm.NewSet()
	vmCached := newVMCache(vmCachedSet)
	vmLookup := vmMetrics{vmLookupSet}

	var ch cgHandles
	var vh vmHandles
	var buf []byte
	for i := range msgs {
		cgCached.apply(&msgs[i], &ch)
		cgLookup.apply(&msgs[i])
		vmCached.apply(&msgs[i], &vh)
		vmLookup.apply(&msgs[i], &buf)
	}

	ref := flatten(t, renderCG(t, cgCachedReg))
	compareSeries(t, "client_golang/cached", ref, "client_golang/lookup", flatten(t, renderCG(t, cgLookupReg)))
	compareSeries(t, "client_golang/cached", ref, "victoriametrics/cached", flatten(t, renderVM(vmCachedSet)))
	compareSeries(t, "client_golang/cached", ref, "victoriametrics/lookup", flatten(t, renderVM(vmLookupSet)))

	// Sanity-check the reference against the workload itself.
	var reqs, fnCalls, sqlCalls, sqlDurCount, infBuckets float64
	for k, v := range ref {
		switch {
		case strings.HasPrefix(k, nameRequests+"{"):
			reqs += v
		case strings.HasPrefix(k, nameFnDuration+"_count{"):
			fnCalls += v
		case strings.HasPrefix(k, nameSQLCalls+"{"):
			sqlCalls += v
		case strings.HasPrefix(k, nameSQLDuration+"_count{"):
			sqlDurCount += v
		case strings.HasPrefix(k, nameReqDuration+"_bucket{") && strings.Contains(k, `le="+Inf"`):
			infBuckets += v
		}
	}
	n := float64(len(msgs))
	if reqs != n || infBuckets != n || fnCalls != n*float64(cfg.fnsPerMsg) ||
		sqlCalls != n*float64(cfg.sqlPerMsg) || sqlDurCount != sqlCalls {
		t.Errorf("totals: requests=%v +Inf=%v fn=%v sql=%v sqlDur=%v; messages=%v",
			reqs, infBuckets, fnCalls, sqlCalls, sqlDurCount, n)
	}
	if len(ref) < 100 {
		t.Errorf("only %d samples; workload too small to be meaningful", len(ref))
	}
	t.Logf("%d samples compared across 4 implementations", len(ref))
}

func TestExpositionFixturesAgree(t *testing.T) {
	for _, fx := range []struct {
		name    string
		data    *expoData
		samples int
	}{
		{"counters10k", expoCounters(), 10000},
		{"histograms1k", expoHistograms(), 1000 * (len(secondsBuckets) + 3)},
	} {
		t.Run(fx.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			fx.data.fillCG(reg)
			set := vm.NewSet()
			fx.data.fillVM(set)
			cg := flatten(t, renderCG(t, reg))
			compareSeries(t, "client_golang", cg, "victoriametrics", flatten(t, renderVM(set)))
			if len(cg) != fx.samples {
				t.Errorf("%d samples, want %d", len(cg), fx.samples)
			}
		})
	}
}
