package phpagent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
)

// Overflow is the label value that stands for every value past a limit.
const Overflow = labelset.OtherValue

type endpointKey struct{ project, endpoint string }

// pair is a two-label key: (endpoint, query_fp), (endpoint, function) or
// (function, caller).
type pair = [2]string

// overflowSecond keeps a pair's endpoint (bounded on its own) and counts
// its second part as "other".
func overflowSecond(k pair) pair { return pair{k[0], Overflow} }

// overflowBoth counts a pair whose parts are bounded by nothing else, a
// (function, caller), as ("other", "other").
func overflowBoth(pair) pair { return pair{Overflow, Overflow} }

type endpointSeries struct {
	duration, memory prometheus.Observer
	cpu, abandoned   prometheus.Counter
	requests         map[[2]string]prometheus.Counter // method, status class
	errors           map[string]prometheus.Counter    // error kind
}

type functionSeries struct {
	self   prometheus.Counter
	hist   prometheus.Observer // nil unless the function ranks in the top K
	window float64             // self seconds since the last ranking
	score  float64             // decayed self seconds, what ranking sorts by
}

type querySeries struct {
	hist   prometheus.Observer // nil unless the query ranks in the top K
	info   bool                // its bitville_sql_query_info is referenced
	window float64
	score  float64
}

type endpointQuerySeries struct{ seconds, calls prometheus.Counter }

// projectState holds one project's label dimensions, each bounded by its
// limit (internal/labelset): the series of a value are created when it
// first gets an entry and deleted when the entry expires.
type projectState struct {
	endpoints       *labelset.Set[string, *endpointSeries]
	functions       *labelset.Set[string, *functionSeries]
	queries         *labelset.Set[string, *querySeries]
	endpointQueries *labelset.Set[pair, *endpointQuerySeries]
	endpointFuncs   *labelset.Set[pair, prometheus.Counter]
	wallFuncs       *labelset.Set[pair, prometheus.Counter] // (function, caller)
	fnHists         int
	queryHists      int
}

func (ps *projectState) empty() bool {
	return ps.endpoints.Len()+ps.functions.Len()+ps.queries.Len()+ps.endpointQueries.Len()+ps.endpointFuncs.Len()+ps.wallFuncs.Len() == 0
}

// newProject declares the dimensions of a project. Called with a.mu held
// (through a.projects.Get).
func (a *Aggregator) newProject(project string) *projectState {
	l, self := a.limits, a.self
	ps := &projectState{}
	ps.endpoints = labelset.New(labelset.Options[string, *endpointSeries]{
		Limit: l.Endpoints, Overflow: labelset.Other,
		Overflowed: self.overflow.WithLabelValues("endpoint"), Expired: self.expired.WithLabelValues("endpoint"),
		New: func(name string) *endpointSeries {
			return &endpointSeries{
				duration:  a.duration.WithLabelValues(project, name),
				memory:    a.memory.WithLabelValues(project, name),
				cpu:       a.cpu.WithLabelValues(project, name),
				abandoned: a.abandoned.WithLabelValues(project, name),
				requests:  make(map[[2]string]prometheus.Counter, 2),
			}
		},
		Delete: func(name string, es *endpointSeries) {
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
		},
	})
	ps.functions = labelset.New(labelset.Options[string, *functionSeries]{
		Limit: l.Functions, Overflow: labelset.Other,
		Overflowed: self.overflow.WithLabelValues("function"), Expired: self.expired.WithLabelValues("function"),
		New: func(name string) *functionSeries {
			fs := &functionSeries{self: a.fnSelf.WithLabelValues(project, name)}
			// Until the first ranking, the first functions seen get the
			// histograms; ranking then moves them to the heaviest.
			if name != Overflow && ps.fnHists < l.TopFunctions {
				fs.hist = a.fnDuration.WithLabelValues(project, name)
				ps.fnHists++
			}
			return fs
		},
		Delete: func(name string, fs *functionSeries) {
			a.fnSelf.DeleteLabelValues(project, name)
			if fs.hist != nil {
				a.fnDuration.DeleteLabelValues(project, name)
				ps.fnHists--
			}
		},
	})
	ps.queries = labelset.New(labelset.Options[string, *querySeries]{
		Limit: l.Queries, Overflow: labelset.Other,
		Overflowed: self.overflow.WithLabelValues("query_fp"), Expired: self.expired.WithLabelValues("query_fp"),
		New: func(fp string) *querySeries {
			qs := &querySeries{}
			if fp != Overflow && ps.queryHists < l.TopQueries {
				qs.hist = a.sqlDuration.WithLabelValues(project, fp)
				ps.queryHists++
			}
			return qs
		},
		Delete: func(fp string, qs *querySeries) {
			if qs.hist != nil {
				a.sqlDuration.DeleteLabelValues(project, fp)
				ps.queryHists--
			}
			if qs.info {
				a.dropQueryInfo(fp)
			}
		},
	})
	ps.endpointQueries = labelset.New(labelset.Options[pair, *endpointQuerySeries]{
		Limit: l.EndpointQueries, Overflow: overflowSecond,
		Overflowed: self.overflow.WithLabelValues("endpoint_query"), Expired: self.expired.WithLabelValues("endpoint_query"),
		New: func(k pair) *endpointQuerySeries {
			return &endpointQuerySeries{
				seconds: a.sqlSeconds.WithLabelValues(project, k[0], k[1]),
				calls:   a.sqlCalls.WithLabelValues(project, k[0], k[1]),
			}
		},
		Delete: func(k pair, _ *endpointQuerySeries) {
			a.sqlSeconds.DeleteLabelValues(project, k[0], k[1])
			a.sqlCalls.DeleteLabelValues(project, k[0], k[1])
		},
	})
	ps.endpointFuncs = labelset.New(labelset.Options[pair, prometheus.Counter]{
		Limit: l.EndpointFunctions, Overflow: overflowSecond,
		Overflowed: self.overflow.WithLabelValues("endpoint_function"), Expired: self.expired.WithLabelValues("endpoint_function"),
		New:    func(k pair) prometheus.Counter { return a.epFnSelf.WithLabelValues(project, k[0], k[1]) },
		Delete: func(k pair, _ prometheus.Counter) { a.epFnSelf.DeleteLabelValues(project, k[0], k[1]) },
	})
	ps.wallFuncs = labelset.New(labelset.Options[pair, prometheus.Counter]{
		Limit: l.WallFunctions, Overflow: overflowBoth,
		Overflowed: self.overflow.WithLabelValues("function_caller"), Expired: self.expired.WithLabelValues("function_caller"),
		New:    func(k pair) prometheus.Counter { return a.fnWall.WithLabelValues(project, k[0], k[1]) },
		Delete: func(k pair, _ prometheus.Counter) { a.fnWall.DeleteLabelValues(project, k[0], k[1]) },
	})
	// The PHP side's loss counters exist from the project's first message,
	// so that increase() sees their first increment.
	self.phpSendFails.WithLabelValues(project)
	self.phpSQLDropped.WithLabelValues(project)
	self.phpTruncated.WithLabelValues(project)
	return ps
}

// endpoint returns the label and series of an endpoint of ps. Called with
// a.mu held.
func (ps *projectState) endpoint(name string, now time.Time) (string, *endpointSeries) {
	if name == "" {
		name = "unknown"
	}
	return ps.endpoints.Get(name, now)
}

// query returns the label and series of a query fingerprint of ps, and
// makes sure its normalised text is in bitville_sql_query_info. Called with
// a.mu held.
func (a *Aggregator) query(ps *projectState, fp, normalized string, now time.Time) (string, *querySeries) {
	fp, qs := ps.queries.Get(fp, now)
	if !qs.info && fp != Overflow {
		a.addQueryInfo(fp, normalized)
		qs.info = true
	}
	return fp, qs
}

// MaxQueryLabelLen bounds the normalised text in bitville_sql_query_info.
const MaxQueryLabelLen = 300

type queryInfo struct {
	text string
	refs int // projects whose query series carry this fingerprint
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
