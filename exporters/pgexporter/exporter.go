package pgexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/rawtrace"
)

// Exporter reads every configured server at scrape time. It is a
// prometheus.Collector; a failing server or collector never fails the
// scrape: it shows in bitville_pg_up and the collector metrics.
type Exporter struct {
	cfg     Config
	log     *slog.Logger
	servers []*serverState
	emit    rawtrace.Emitter // the background collectors' raw-trace events

	mu     sync.Mutex // one scrape at a time: collectors keep state
	errors *prometheus.CounterVec
}

type serverState struct {
	srv        *server
	dsn        string
	stmts      *statements
	collectors []collector // run at every scrape, in order; stmts is the first
	up         bool
	results    []collectorResult
}

// collectorFactories make the collectors of each server after the
// statements one, in the order their files register them (init, file
// name order). A collector that also implements backgroundCollector is
// started by RunBackground.
var collectorFactories []func(cfg Config) collector

// backgroundCollector is a collector that also works between scrapes
// (the active-session sampler), on a connection of its own: run gets a
// second server for the same DSN, the scrapes' one (whose sessions are
// the exporter's own) and the Emitter of its raw-trace events, and
// returns when ctx ends.
type backgroundCollector interface {
	collector
	run(ctx context.Context, srv, scrapes *server, emit rawtrace.Emitter)
}

// collector is one part of a scrape: update reads the server (within the
// scrape's deadline, on the server's one connection), collect emits what
// it knows, also after a failed update (counters keep their values).
type collector interface {
	name() string
	update(ctx context.Context, c *pgx.Conn, version int) error
	collect(server string, ch chan<- prometheus.Metric)
}

var (
	descUp       = prometheus.NewDesc("bitville_pg_up", "Whether the server could be connected to and queried at the last scrape (1) or not (0).", []string{"server"}, nil)
	descDuration = prometheus.NewDesc("bitville_pg_scrape_duration_seconds", "How long each collector took at the last scrape.", []string{"server", "collector"}, nil)
	descSuccess  = prometheus.NewDesc("bitville_pg_scrape_collector_success", "Whether each collector succeeded at the last scrape (1) or not (0).", []string{"server", "collector"}, nil)
)

// New returns an exporter for cfg (validated). It connects lazily: a
// server that is down at start is retried at every scrape.
func New(cfg Config, log *slog.Logger) (*Exporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Exporter{cfg: cfg, log: log, emit: rawtrace.Discard,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_pg_scrape_errors_total",
			Help: "Collector runs that failed, by server and collector (the last error is logged).",
		}, []string{"server", "collector"}),
	}
	seen := map[string]bool{}
	for _, dsn := range cfg.DSNs {
		srv, err := newServer(dsn, cfg.StatementTimeout, cfg.Connections)
		if err != nil {
			return nil, err
		}
		if seen[srv.label] {
			return nil, errors.New("pg.dsn: " + srv.label + " is given twice")
		}
		seen[srv.label] = true
		st := newStatements(cfg.TopQueries, cfg.TextCache)
		cs := []collector{st}
		for _, f := range collectorFactories {
			cs = append(cs, f(cfg))
		}
		e.servers = append(e.servers, &serverState{srv: srv, dsn: dsn, stmts: st, collectors: cs})
	}
	return e, nil
}

// Describe sends nothing: the exporter's series depend on the servers
// (an unchecked collector).
func (e *Exporter) Describe(chan<- *prometheus.Desc) {}

// Collect scrapes every server, each within the scrape timeout.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range e.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.scrape(s)
		}()
	}
	wg.Wait()
	texts := map[string]string{}
	for _, s := range e.servers {
		up := 0.0
		if s.up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, s.srv.label)
		for _, r := range s.results {
			ok := 0.0
			if r.err == nil {
				ok = 1
			}
			ch <- prometheus.MustNewConstMetric(descDuration, prometheus.GaugeValue, r.took.Seconds(), s.srv.label, r.name)
			ch <- prometheus.MustNewConstMetric(descSuccess, prometheus.GaugeValue, ok, s.srv.label, r.name)
		}
		for _, c := range s.collectors {
			c.collect(s.srv.label, ch)
		}
		s.stmts.queryTexts(texts)
	}
	for fp, t := range texts {
		ch <- prometheus.MustNewConstMetric(descQueryInfo, prometheus.GaugeValue, 1, fp, t)
	}
	e.errors.Collect(ch)
}

type collectorResult struct {
	name string
	took time.Duration
	err  error
}

// scrape runs the collectors of one server, each on its own so that one
// failing does not stop the others; all share the scrape's deadline. They
// run concurrently, one worker per connection of the server
// (pg.connections): each worker connects (if its connection is not open),
// then takes the next collector in order until none is left, so the
// longest, statements, starts first and the short ones fill the other
// connections meanwhile. A worker that cannot connect (or reconnect
// after its connection broke) leaves the collectors to the others; the
// server is down when none could.
func (e *Exporter) scrape(s *serverState) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.ScrapeTimeout)
	defer cancel()
	n := len(s.collectors)
	s.results = slices.Grow(s.results[:0], n)[:n]
	clear(s.results)
	workers := min(s.srv.size, n)
	var next atomic.Int32
	var mu sync.Mutex
	var connErrs []error // of the workers that could not connect
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sl, err := s.srv.take(ctx)
			if err == nil {
				defer s.srv.put(sl)
				err = s.srv.connect(ctx, sl)
			}
			if err != nil {
				mu.Lock()
				connErrs = append(connErrs, err)
				mu.Unlock()
				return
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c := s.collectors[i]
				start := time.Now()
				err := s.srv.run(ctx, sl, func(ctx context.Context, conn *pgx.Conn, version int) error {
					return c.update(ctx, conn, version)
				})
				s.results[i] = collectorResult{name: c.name(), took: time.Since(start), err: err}
				var ce *connectError
				if errors.As(err, &ce) { // it broke and could not be opened again
					mu.Lock()
					connErrs = append(connErrs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	s.up = len(connErrs) < workers
	for i, c := range s.collectors {
		if s.results[i].name == "" { // no worker could connect
			s.results[i] = collectorResult{name: c.name(), err: fmt.Errorf("not run: %w", connErrs[0])}
		}
	}
	for _, err := range connErrs {
		if s.up {
			// The others did the work; say why this one could not.
			e.log.Warn("cannot open another connection", "server", s.srv.label, "err", err)
		}
	}
	for _, r := range s.results {
		if r.err != nil {
			e.errors.WithLabelValues(s.srv.label, r.name).Inc()
			e.log.Warn("collector failed", "server", s.srv.label, "collector", r.name, "err", r.err)
		}
	}
}

// ShipTo sends the raw-trace events (pg_locks, pg_activity) to emit.
// Call it before RunBackground, and only with a sink to send to: until
// then the events are not even built (rawtrace.Discard).
func (e *Exporter) ShipTo(emit rawtrace.Emitter) {
	if emit == nil {
		emit = rawtrace.Discard
	}
	e.emit = emit
}

// RunBackground runs the background collectors of every server, each on
// a connection of its own, until ctx ends.
func (e *Exporter) RunBackground(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range e.servers {
		for _, c := range s.collectors {
			bc, ok := c.(backgroundCollector)
			if !ok {
				continue
			}
			srv, err := newServer(s.dsn, e.cfg.StatementTimeout, 1)
			if err != nil {
				continue // the same DSN parsed in New
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer srv.close()
				bc.run(ctx, srv, s.srv, e.emit)
			}()
		}
	}
	wg.Wait()
}

// Close closes the connections.
func (e *Exporter) Close() {
	for _, s := range e.servers {
		s.srv.close()
	}
}
