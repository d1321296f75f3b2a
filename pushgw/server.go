package pushgw

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// expireEvery is how often expired instances leave the store.
const expireEvery = time.Second

// EventSink is where the gateway hands the events it accepts: the
// rawtrace Pipeline in front of Loki and Graylog.
type EventSink interface {
	rawtrace.Emitter
	Enabled() bool
	Healthy() bool // false while every sink fails
}

// Options are what the command gives a Server besides its flags.
type Options struct {
	Log     *slog.Logger
	Tokens  *TokenSource
	Remote  *RemoteWriter // nil: no remote write
	Events  EventSink     // nil or not Enabled: events are refused (422)
	Version string
	Now     func() time.Time
}

// Server answers pushes: it authenticates each by its token, checks it
// whole, keeps metrics in its Store for /metrics (and remote write) and
// hands events to the event sinks. Its handlers are safe for concurrent
// use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tokens   *TokenSource
	store    *Store
	remote   *RemoteWriter
	events   EventSink
	version  string
	now      func() time.Time
	m        *metrics
	samples  *projectLimiter
	eventLim *projectLimiter
	batches  *recentBatches
	inflight chan struct{}
	stopping atomic.Bool
	refusals *throttle.Throttle
}

// New builds a Server and registers its self-metrics on reg.
func New(cfg Config, opts Options, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid pushgw configuration: %w", err)
	}
	if opts.Tokens == nil {
		return nil, errors.New("pushgw needs its tokens")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      log,
		tokens:   opts.Tokens,
		store:    NewStore(cfg.Limits, cfg.SeriesTTL),
		remote:   opts.Remote,
		events:   opts.Events,
		version:  opts.Version,
		now:      opts.Now,
		samples:  newProjectLimiter(cfg.SamplesRate, cfg.SamplesBurst),
		eventLim: newProjectLimiter(cfg.EventsRate, cfg.EventsBurst),
		batches:  newRecentBatches(),
		inflight: make(chan struct{}, cfg.MaxInflight),
		refusals: throttle.New(time.Minute),
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.m, err = newMetrics(reg); err != nil {
		return nil, err
	}
	if err := reg.Register(newStoreCollector(s.store)); err != nil {
		return nil, err
	}
	s.m.tokenProjects.Set(float64(len(s.tokens.Tokens().Projects())))
	return s, nil
}

// TokensReloaded is what the command calls after each reload of the
// tokens file (SIGHUP, or a change Watch saw).
func (s *Server) TokensReloaded(err error) {
	if err != nil {
		s.m.tokenReloads.WithLabelValues("failure").Inc()
		s.log.Error("cannot reload the tokens file; the tokens in force stay", "err", err)
		return
	}
	s.m.tokenReloads.WithLabelValues("success").Inc()
	s.m.tokenProjects.Set(float64(len(s.tokens.Tokens().Projects())))
	s.log.Info("reloaded the tokens file", "projects", len(s.tokens.Tokens().Projects()))
}

// Store is where the pushed series live.
func (s *Server) Store() *Store { return s.store }

// Stopping makes /readyz fail and new pushes wait (503), so that a load
// balancer sends them elsewhere while the pushes in progress finish.
func (s *Server) Stopping() { s.stopping.Store(true) }

// RunExpiry drops expired instances every second until done is closed.
func (s *Server) RunExpiry(done <-chan struct{}) {
	tick := time.NewTicker(expireEvery)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			s.store.Expire(s.now())
		}
	}
}

var landing = template.Must(template.New("landing").Parse(`<!doctype html>
<html><head><title>bitville-apm pushgw</title></head><body>
<h1>bitville-apm pushgw {{.Version}}</h1>
<p>Projects: {{range .Projects}}<code>{{.}}</code> {{end}}</p>
<ul><li><a href="metrics">/metrics</a> (the pushed series of every live instance, and the gateway's own)</li>
<li><a href="api/v1/instances">/api/v1/instances</a> (who pushed when, JSON)</li>
<li><a href="healthz">/healthz</a></li><li><a href="readyz">/readyz</a></li></ul>
<p>Pushes: <code>POST {{.MetricsPath}}</code> and <code>POST {{.EventsPath}}</code> with <code>Authorization: Bearer &lt;token&gt;</code>.</p>
</body></html>
`))

// Handler serves the push endpoints, /metrics (g is the gateway's own
// registry, merged with the pushed series), /api/v1/instances, /healthz,
// /readyz and the landing page.
func (s *Server) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+push.MetricsPath, s.pushHandler(kindMetrics, s.handleMetrics))
	mux.Handle("POST "+push.EventsPath, s.pushHandler(kindEvents, s.handleEvents))
	mux.Handle("GET /metrics", s.metricsHandler(g))
	mux.HandleFunc("GET /api/v1/instances", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"instances": s.store.Instances()})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := s.notReady(); why != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(why + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = landing.Execute(w, map[string]any{"Version": s.version, "Projects": s.tokens.Tokens().Projects(),
			"MetricsPath": push.MetricsPath, "EventsPath": push.EventsPath})
	})
	return mux
}

// notReady says why the gateway should get no pushes, or "": it is
// stopping, or every place it forwards to is failing. With nothing to
// forward to (Prometheus scrapes it) it is ready.
func (s *Server) notReady() string {
	if s.stopping.Load() {
		return "stopping"
	}
	var forwarders, failing int
	if s.remote != nil {
		forwarders++
		if !s.remote.Healthy() {
			failing++
		}
	}
	if s.events != nil && s.events.Enabled() {
		forwarders++
		if !s.events.Healthy() {
			failing++
		}
	}
	if forwarders > 0 && failing == forwarders {
		return "every sink is failing (remote write, Loki, GELF)"
	}
	return ""
}

// pushHandler wraps a push handler with what every push gets: a place
// among the pushes in flight, the token, the timing and the answer to a
// refusal.
func (s *Server) pushHandler(kind string, handle func(w http.ResponseWriter, r *http.Request, project string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		project := unknownProject
		err := func() error {
			if s.stopping.Load() {
				w.Header().Set("Retry-After", "1")
				return reject(http.StatusServiceUnavailable, ReasonOverloaded, "the gateway is stopping")
			}
			select {
			case s.inflight <- struct{}{}:
				defer func() { <-s.inflight }()
			default:
				w.Header().Set("Retry-After", "1")
				return reject(http.StatusServiceUnavailable, ReasonOverloaded, "%d pushes are in progress (pushgw.max-inflight)", s.cfg.MaxInflight)
			}
			s.m.inflight.Inc()
			defer s.m.inflight.Dec()
			p, ok := s.tokens.Tokens().Project(bearer(r))
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="bitville-apm pushgw"`)
				return reject(http.StatusUnauthorized, ReasonUnauthorized, "no valid token (Authorization: Bearer <token>)")
			}
			project = p
			return handle(w, r, project)
		}()
		s.m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
		if err == nil {
			return
		}
		var rej *Rejection
		if !errors.As(err, &rej) {
			rej = &Rejection{Status: http.StatusInternalServerError, Reason: ReasonInternal, Err: err}
		}
		s.m.pushes.WithLabelValues(project, kind, "rejected").Inc()
		s.m.rejected.WithLabelValues(project, kind, rej.Reason).Inc()
		if rej.Status == http.StatusTooManyRequests || rej.Status >= 500 {
			if w.Header().Get("Retry-After") == "" {
				w.Header().Set("Retry-After", "1")
			}
		}
		if suppressed, ok := s.refusals.Allow(); ok {
			s.log.Debug("refused a push", "project", project, "kind", kind, "reason", rej.Reason, "status", rej.Status, "err", rej.Err, "remote", r.RemoteAddr, "suppressed", suppressed)
		}
		http.Error(w, rej.Error(), rej.Status)
	})
}

// metricsHandler serves the pushed series of every live instance merged
// with the gateway's own (g), gzipped when the scraper takes it.
func (s *Server) metricsHandler(g prometheus.Gatherer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.store.Expire(s.now())
		own, err := g.Gather()
		if err != nil {
			// A collector's error leaves out only its own metrics, as
			// promhttp's ContinueOnError does.
			s.log.Warn("cannot gather the gateway's own metrics", "err", err)
		}
		w.Header().Set("Content-Type", push.MetricsContentType)
		var out io.Writer = w
		if acceptsGzip(r) {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			out = zw
		}
		if _, err := s.store.WriteWith(out, own); err != nil {
			s.log.Debug("cannot write /metrics", "err", err)
		}
	})
}

// acceptsGzip says whether the request's Accept-Encoding takes gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}

// answer writes a push's JSON answer.
func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// setRetryAfter sets the Retry-After of a 429 that waits for wait.
func setRetryAfter(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
}

// handleMetrics takes one metrics snapshot: checked whole, then applied
// (or recognised as a duplicate or stale) and remote-written.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request, project string) error {
	meta, err := metricsMeta(r, project)
	if err != nil {
		return err
	}
	if err := checkContentType(r, "text/plain"); err != nil {
		return err
	}
	body, err := readBody(w, r, int64(s.cfg.MaxBodyBytes), int64(s.cfg.MaxDecodedBytes))
	if err != nil {
		return err
	}
	now := s.now()
	snap, err := Parse(body, meta, s.cfg.Limits, now)
	if err != nil {
		return err
	}
	if ok, wait := s.samples.take(project, snap.Series, now); !ok {
		setRetryAfter(w, wait)
		return reject(http.StatusTooManyRequests, ReasonRateLimited, "project %s is over its %g samples/s (pushgw.samples-rate); %d samples wait", project, s.cfg.SamplesRate, snap.Series)
	}
	outcome, err := s.store.Apply(snap, now)
	if err != nil {
		return err
	}
	s.m.pushes.WithLabelValues(project, kindMetrics, string(outcome)).Inc()
	if outcome != Duplicate {
		s.m.samples.WithLabelValues(project).Add(float64(snap.Series))
		if snap.Rewritten > 0 {
			s.m.rewritten.WithLabelValues(project, kindMetrics).Add(float64(snap.Rewritten))
		}
		if s.remote != nil {
			s.remote.Enqueue(snap)
		}
	}
	answer(w, map[string]any{"status": outcome, "series": snap.Series})
	return nil
}
