package rawtrace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/throttle"
)

// Options are what the command gives a Pipeline besides its flags.
type Options struct {
	Job      string // Loki label job / GELF _job
	Instance string // Loki label instance / GELF host; "" → os.Hostname()
	SpoolDir string // the spool directory when Config.SpoolDir is ""
	Log      *slog.Logger
	Now      func() time.Time // nil: time.Now
}

// logEvery is how often a repeated problem (a spool that cannot be
// written, batches the receiver refuses) is logged.
const logEvery = time.Minute

// Pipeline takes events from the producers and delivers them to its sinks:
// Emit rate-limits and spools them, and Run sends each sink's spool in
// batches behind a circuit breaker. Emit is safe for concurrent use and may
// be called before Run starts and after it returned (events then stay in
// the spool or, once Run has closed it, are lost).
type Pipeline struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	m        *metrics
	limiter  *rateLimiter
	senders  []*sender
	badLines *throttle.Throttle
}

// sender is the delivery of one sink.
type sender struct {
	sink    Sink
	spool   *spool
	m       sinkMetrics
	br      *breaker
	log     *slog.Logger
	rejects *throttle.Throttle
	ioErrs  *throttle.Throttle
	failing atomic.Bool // the breaker is open (Healthy reads it)
}

// NewWithSinks returns a Pipeline that delivers to sinks, each through its
// spool, a subdirectory named after the sink of cfg.SpoolDir (or
// opts.SpoolDir); what a previous run left there is sent first. Its
// self-metrics are registered on reg.
func NewWithSinks(cfg Config, opts Options, reg prometheus.Registerer, sinks ...Sink) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid raw-trace settings: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{
		cfg:      cfg,
		log:      log.With("component", "rawtrace"),
		now:      opts.Now,
		limiter:  newRateLimiter(cfg.RateLimit, cfg.RateBurst),
		badLines: throttle.New(logEvery),
	}
	if p.now == nil {
		p.now = time.Now
	}
	var err error
	if p.m, err = newMetrics(reg); err != nil {
		return nil, err
	}
	dir := cfg.SpoolDir
	if dir == "" {
		dir = opts.SpoolDir
	}
	if dir == "" && len(sinks) > 0 {
		return nil, errors.New("events.spool-dir: a spool directory is needed to ship raw traces")
	}
	seen := map[string]bool{}
	for _, sink := range sinks {
		name := sink.Name()
		if seen[name] {
			p.closeSpools()
			return nil, fmt.Errorf("two raw-trace sinks named %q", name)
		}
		seen[name] = true
		m := p.m.forSink(name)
		sp, err := openSpool(filepath.Join(dir, name), int64(cfg.SpoolMaxBytes), m)
		if err != nil {
			p.closeSpools()
			return nil, fmt.Errorf("cannot open the %s spool: %w", name, err)
		}
		p.senders = append(p.senders, &sender{
			sink: sink, spool: sp, m: m,
			br:      newBreaker(cfg.BreakerFailures, cfg.BreakerProbe),
			log:     p.log.With("sink", name),
			rejects: throttle.New(logEvery),
			ioErrs:  throttle.New(logEvery),
		})
	}
	return p, nil
}

// Healthy reports whether a sink delivers: true without sinks, and
// while any sink's breaker is closed. A gateway that forwards events
// reports it on /readyz.
func (p *Pipeline) Healthy() bool {
	if len(p.senders) == 0 {
		return true
	}
	for _, s := range p.senders {
		if !s.failing.Load() {
			return true
		}
	}
	return false
}

// Enabled reports whether the pipeline has a sink; without one Emit keeps
// nothing.
func (p *Pipeline) Enabled() bool { return len(p.senders) > 0 }

// Emit takes an event: dropped and counted when its line is too large or
// its project is over its rate for the event's priority, else written to
// every sink's spool. It never waits on a sink.
func (p *Pipeline) Emit(e Event) {
	if len(p.senders) == 0 {
		return
	}
	if e.Priority >= numPriorities {
		e.Priority = PrioritySampled
	}
	if len(e.Line) > int(p.cfg.MaxLineBytes) {
		p.m.tooLarge.Inc()
		return
	}
	if !p.limiter.allow(e.Project, e.Priority, p.now()) {
		p.m.rateLimited.Inc()
		return
	}
	rec, err := encodeRecord(e)
	if err != nil {
		p.m.invalid.Inc()
		if n, ok := p.badLines.Allow(); ok {
			p.log.Warn("dropping an event whose line is not JSON", "kind", e.Kind, "err", err, "suppressed_since_last", n)
		}
		return
	}
	p.m.accepted(e.Kind, e.Priority)
	for _, s := range p.senders {
		if err := s.spool.append(e.Priority, rec); err != nil {
			if errors.Is(err, errSpoolClosed) {
				continue // emitted after Run stopped
			}
			s.m.spoolFull.Inc()
			if n, ok := s.ioErrs.Allow(); ok {
				s.log.Warn("cannot spool an event; dropped", "err", err, "suppressed_since_last", n)
			}
		}
	}
}

// Admit says whether an event of project and priority would pass the rate
// limit now, without taking its place: a producer asks before it builds
// an event, so that a flood the limit drops costs it nothing. A refusal is
// counted as a drop (reason rate_limited) and the producer drops the
// event; an admitted event is given to Emit, which decides again.
func (p *Pipeline) Admit(project string, prio Priority) bool {
	if len(p.senders) == 0 {
		return false
	}
	if prio >= numPriorities {
		prio = PrioritySampled
	}
	if !p.limiter.admits(project, prio, p.now()) {
		p.m.rateLimited.Inc()
		return false
	}
	return true
}

// Start runs Run in the background until the returned stop is called;
// stop returns once Run has: the spools saved, the sinks closed. A command
// defers stop after whatever emits, so that the last events are spooled
// before the clean stop.
func (p *Pipeline) Start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// Run sends each sink's spool until ctx ends, one goroutine a sink. Then
// it lets a push under way finish (or time out), saves the spools'
// cursors and closes the sinks. Without a sink it only waits for ctx.
// Call it once.
func (p *Pipeline) Run(ctx context.Context) {
	if len(p.senders) == 0 {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	for _, s := range p.senders {
		wg.Go(func() { p.send(ctx, s) })
	}
	wg.Wait()
	for _, s := range p.senders {
		if err := s.spool.close(); err != nil {
			s.log.Warn("cannot save the spool at stop; its last batch may be sent again", "err", err)
		}
		if err := s.sink.Close(); err != nil {
			s.log.Warn("cannot close the sink", "err", err)
		}
	}
}

func (p *Pipeline) closeSpools() {
	for _, s := range p.senders {
		_ = s.spool.close()
	}
}

// send is the loop of one sink: wait for a batch, push it, acknowledge it
// or back off and retry it, and keep off the receiver while the breaker is
// open.
func (p *Pipeline) send(ctx context.Context, s *sender) {
	retry := false // the last push failed: its events go again without waiting for more
	for ctx.Err() == nil {
		if !retry && !p.waitBatch(ctx, s) {
			return
		}
		if d := s.br.wait(p.now()); d > 0 && !sleep(ctx, d) {
			return
		}
		b := s.spool.peek(p.cfg.BatchSize, int64(p.cfg.BatchBytes))
		retry = false
		if len(b.events) == 0 {
			p.ack(s, b) // only damaged records: skip them
			continue
		}
		err := p.push(ctx, s, b.events)
		var perm *PermanentError
		var part *PartialError
		switch {
		case err == nil:
			s.m.sent.Add(float64(len(b.events)))
		case errors.As(err, &part):
			s.m.sent.Add(float64(len(b.events) - part.TooLarge - part.Rejected))
			s.m.tooLarge.Add(float64(part.TooLarge))
			s.m.rejected.Add(float64(part.Rejected))
			if n, ok := s.rejects.Allow(); ok {
				s.log.Warn("the receiver took a batch but for some events; those dropped", "events", len(b.events), "too_large", part.TooLarge, "refused", part.Rejected, "err", part.Err, "suppressed_since_last", n)
			}
		case errors.As(err, &perm):
			s.m.rejected.Add(float64(len(b.events)))
			if n, ok := s.rejects.Allow(); ok {
				s.log.Warn("the receiver refused a batch; dropped", "events", len(b.events), "err", err, "suppressed_since_last", n)
			}
		default:
			s.m.pushFailures.Inc()
			if s.br.failure(p.now()) {
				s.m.breakerOpen.Set(1)
				s.failing.Store(true)
				s.log.Warn("sink unreachable, circuit breaker open: no push until the probe", "failures", p.cfg.BreakerFailures, "probe_in", p.cfg.BreakerProbe, "err", err)
			}
			retry = true
			if s.br.open {
				continue // the breaker says when
			}
			if !sleep(ctx, backoff(p.cfg.BackoffMin, p.cfg.BackoffMax, s.br.failed)) {
				return
			}
			continue
		}
		// Taken or refused for good: the receiver answers.
		p.ack(s, b)
		if s.br.success() {
			s.m.breakerOpen.Set(0)
			s.failing.Store(false)
			s.log.Info("sink reachable again, circuit breaker closed")
		}
	}
}

// waitBatch waits for an event, then up to BatchWait for a whole batch,
// and reports false when ctx ended first.
func (p *Pipeline) waitBatch(ctx context.Context, s *sender) bool {
	for {
		if n, _ := s.spool.pending(); n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return false
		case <-s.spool.notify:
		}
	}
	t := time.NewTimer(p.cfg.BatchWait)
	defer t.Stop()
	for {
		if n, bytes := s.spool.pending(); n >= p.cfg.BatchSize || bytes >= int64(p.cfg.BatchBytes) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-s.spool.notify:
		case <-t.C:
			return true
		}
	}
}

// push sends one batch within the timeout. A push under way when ctx ends
// is let finish: its events would otherwise be sent again on restart.
func (p *Pipeline) push(ctx context.Context, s *sender, events []Event) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := s.sink.Send(pctx, events)
	s.m.pushDuration.Observe(time.Since(start).Seconds())
	return err
}

func (p *Pipeline) ack(s *sender, b spoolBatch) {
	if err := s.spool.ack(b); err != nil {
		if n, ok := s.ioErrs.Allow(); ok {
			s.log.Warn("cannot save the spool cursor; after a crash its events may be sent again", "err", err, "suppressed_since_last", n)
		}
	}
}

// backoff is the wait after the n-th consecutive failure: a uniform draw
// between lo and a ceiling that starts at lo and doubles up to hi (full
// jitter above the floor), so that many agents that lost the receiver at
// once do not come back in step.
func backoff(lo, hi time.Duration, n int) time.Duration {
	ceil := lo
	for i := 1; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return lo + rand.N(ceil-lo+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
