package push

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/bitville/bitville-apm/internal/buildinfo"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// Options are what the command gives a Pusher or an EventSink besides its
// flags.
type Options struct {
	Job      string           // Bitville-Job: the pushing program, e.g. bitville-apm-agent
	Instance string           // Bitville-Instance; "": the hostname
	SpoolDir string           // the spool directory when Config.SpoolDir is ""
	Log      *slog.Logger     // nil: discard
	Now      func() time.Time // the clock of the snapshots' Bitville-Time; nil: time.Now
}

// logEvery is how often a repeated problem (a failing push, a spool that
// cannot be written) is logged.
const logEvery = time.Minute

// Results of bitville_push_pushes_total.
const (
	resultSent     = "sent"     // pushgw took the snapshot (applied, duplicate or stale)
	resultFailed   = "failed"   // a push that failed and is retried
	resultRejected = "rejected" // pushgw refused the snapshot for good; dropped
	resultDropped  = "dropped"  // evicted from the full spool, or could not be spooled or read
)

// Pusher gathers g every Interval into a snapshot file of its spool and
// sends the spool to pushgw, oldest first, behind a circuit breaker with
// backoff; a clean stop gathers once more and tries to deliver within
// Timeout. Snapshots a previous run left in the spool are sent first,
// with their own batch ids. Self-metrics bitville_push_*.
type Pusher struct {
	interval time.Duration
	timeout  time.Duration
	g        prometheus.Gatherer
	post     *poster
	spool    *snapshotSpool
	delivery rawtrace.Delivery
	br       *rawtrace.Breaker // of the sender goroutine only
	boot     string
	seq      uint64 // of the gathering goroutine only
	m        pusherMetrics
	log      *slog.Logger
	now      func() time.Time

	gatherErrs, spoolErrs, pushErrs, rejects *throttle.Throttle
}

type pusherMetrics struct {
	sent, failed, rejected prometheus.Counter
	breakerOpen            prometheus.Gauge
	lastSuccess            prometheus.Gauge
	duration               prometheus.Histogram
	spool                  spoolMetrics
}

// NewPusher checks cfg, reads the token and TLS files, takes the spool
// directory (cfg.SpoolDir, else opts.SpoolDir; it fails when another
// process holds it) and registers the self-metrics on reg. Start it.
func NewPusher(cfg Config, opts Options, g prometheus.Gatherer, reg prometheus.Registerer) (*Pusher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid push settings: %w", err)
	}
	return newPusher(cfg, opts, g, reg)
}

// newPusher is NewPusher on settings already valid (tests use intervals
// shorter than Validate allows).
func newPusher(cfg Config, opts Options, g prometheus.Gatherer, reg prometheus.Registerer) (*Pusher, error) {
	opts, err := checkSettings(cfg, opts)
	if err != nil {
		return nil, err
	}
	dir := cfg.SpoolDir
	if dir == "" {
		dir = opts.SpoolDir
	}
	if dir == "" {
		return nil, errors.New("push.spool-dir: a spool directory is needed to push metrics")
	}
	post, err := newPoster(cfg, MetricsPath, opts.Job, opts.Instance)
	if err != nil {
		return nil, err
	}
	boot, err := newBoot()
	if err != nil {
		return nil, err
	}
	m, collectors := newPusherMetrics()
	p := &Pusher{
		interval:   cfg.Interval,
		timeout:    cfg.Timeout,
		g:          g,
		post:       post,
		boot:       boot,
		m:          m,
		log:        opts.Log.With("component", "push"),
		now:        opts.Now,
		gatherErrs: throttle.New(logEvery),
		spoolErrs:  throttle.New(logEvery),
		pushErrs:   throttle.New(logEvery),
		rejects:    throttle.New(logEvery),
	}
	p.setDelivery(rawtrace.DefaultDelivery())
	if p.spool, err = openSnapshotSpool(dir, int64(cfg.SpoolMaxBytes), m.spool); err != nil {
		return nil, err
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			_ = p.spool.close()
			return nil, fmt.Errorf("cannot register the push self-metrics: %w", err)
		}
	}
	return p, nil
}

// checkSettings checks that cfg pushes and the names of opts, and fills
// opts' defaults.
func checkSettings(cfg Config, opts Options) (Options, error) {
	if !cfg.Enabled() {
		return opts, errors.New("push.url is empty: nowhere to push to")
	}
	if opts.Instance == "" {
		opts.Instance = cfg.Instance
	}
	if opts.Instance == "" {
		h, err := os.Hostname()
		if err != nil {
			return opts, fmt.Errorf("cannot name the pushing instance: %w", err)
		}
		opts.Instance = h
	}
	if !ValidName(opts.Job) {
		return opts, fmt.Errorf("invalid push job %q: want 1 to %d bytes of printable UTF-8 without '/'", opts.Job, maxNameBytes)
	}
	if !ValidName(opts.Instance) {
		return opts, fmt.Errorf("invalid push instance %q: want 1 to %d bytes of printable UTF-8 without '/'", opts.Instance, maxNameBytes)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return opts, nil
}

// setDelivery sets the retry policy (tests shorten it).
func (p *Pusher) setDelivery(d rawtrace.Delivery) {
	p.delivery = d
	p.br = d.NewBreaker()
}

// newBoot draws the boot id of this process run: 16 lowercase hex.
func newBoot() (string, error) {
	var b [bootLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cannot draw the push boot id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func newPusherMetrics() (pusherMetrics, []prometheus.Collector) {
	pushes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bitville_push_pushes_total",
		Help: "Metrics snapshots by outcome: sent (pushgw took it), failed (a push to retry), rejected (refused for good, dropped), dropped (evicted from the full spool or not spooled).",
	}, []string{"result"})
	spoolBytes := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bitville_push_spool_bytes",
		Help: "Size of the snapshot files in the push spool.",
	})
	spoolSnapshots := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bitville_push_spool_snapshots",
		Help: "Snapshots in the push spool, not yet delivered.",
	})
	breakerOpen := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bitville_push_breaker_open",
		Help: "1 while the push's circuit breaker is open (no push is tried until the probe), else 0.",
	})
	lastSuccess := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bitville_push_last_success_timestamp_seconds",
		Help: "Unix time of the last snapshot pushgw took; 0 before the first.",
	})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bitville_push_push_duration_seconds",
		Help:    "Duration of metrics pushes, failed ones included.",
		Buckets: prometheus.DefBuckets,
	})
	m := pusherMetrics{
		sent:        pushes.WithLabelValues(resultSent),
		failed:      pushes.WithLabelValues(resultFailed),
		rejected:    pushes.WithLabelValues(resultRejected),
		breakerOpen: breakerOpen,
		lastSuccess: lastSuccess,
		duration:    duration,
		spool: spoolMetrics{
			snapshots: spoolSnapshots,
			bytes:     spoolBytes,
			dropped:   pushes.WithLabelValues(resultDropped),
		},
	}
	return m, []prometheus.Collector{pushes, spoolBytes, spoolSnapshots, breakerOpen, lastSuccess, duration}
}

// stopBudget bounds the delivery at a clean stop: what is left stays in
// the spool for the next start, and the daemon stops well within the 15 s
// its systemd unit gives it (TimeoutStopSec).
const stopBudget = 5 * time.Second

// Start runs the Pusher in the background: a snapshot every Interval, and
// a sender of the spool. The returned stop ends both, gathers one last
// snapshot, tries to deliver the spool within Timeout and stopBudget (giving up early
// while the breaker is open), and lets go of the spool, whose undelivered
// snapshots the next start sends. Call Start once; stop may be called
// more than once.
func (p *Pusher) Start() (stop func()) {
	n, _ := p.spool.len()
	p.log.Info("pushing metrics", "url", p.post.shown, "interval", p.interval, "boot", p.boot, "spooled", n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { p.gatherEvery(ctx) })
	wg.Go(func() { p.send(ctx, false) })
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		p.snapshot()
		fctx, fcancel := context.WithTimeout(context.Background(), min(p.timeout, stopBudget))
		p.send(fctx, true)
		fcancel()
		if n, _ := p.spool.len(); n > 0 {
			p.log.Warn("stopping with snapshots not delivered; the next start sends them", "snapshots", n)
		}
		if err := p.spool.close(); err != nil {
			p.log.Warn("cannot unlock the push spool", "err", err)
		}
		p.post.close()
	})
}

func (p *Pusher) gatherEvery(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.snapshot()
		}
	}
}

// snapshot gathers g into the next snapshot file. A gatherer that fails
// for some collectors still gives the families it could gather, which are
// pushed: one broken collector does not stop the push.
func (p *Pusher) snapshot() {
	at := p.now()
	mfs, err := p.g.Gather()
	if err != nil {
		if n, ok := p.gatherErrs.Allow(); ok {
			p.log.Warn("cannot gather all the metrics; pushing the rest", "err", err, "suppressed_since_last", n)
		}
		if len(mfs) == 0 {
			return
		}
	}
	body, err := encodeSnapshot(mfs)
	if err != nil {
		p.m.spool.dropped.Inc()
		if n, ok := p.spoolErrs.Allow(); ok {
			p.log.Warn("cannot encode a metrics snapshot; dropped", "err", err, "suppressed_since_last", n)
		}
		return
	}
	p.seq++
	meta := snapshotMeta{Batch: BatchID{Boot: p.boot, Seq: p.seq}, Time: at, Interval: p.interval}
	if err := p.spool.add(meta, body); err != nil {
		p.m.spool.dropped.Inc()
		if n, ok := p.spoolErrs.Allow(); ok {
			p.log.Warn("cannot spool a metrics snapshot; dropped", "err", err, "suppressed_since_last", n)
		}
	}
}

// encodeSnapshot writes mfs in the text format 0.0.4, gzipped. Samples
// lose their timestamps: a snapshot is one moment, its Bitville-Time.
func encodeSnapshot(mfs []*dto.MetricFamily) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := expfmt.NewEncoder(zw, expfmt.FmtText)
	for _, mf := range mfs {
		if err := enc.Encode(withoutTimestamps(mf)); err != nil {
			return nil, fmt.Errorf("cannot encode metric family %s: %w", mf.GetName(), err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("cannot compress the snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// withoutTimestamps returns mf, or a copy of it without sample timestamps
// when it has some (the gatherer's families are not ours to change).
func withoutTimestamps(mf *dto.MetricFamily) *dto.MetricFamily {
	stamped := false
	for _, m := range mf.Metric {
		stamped = stamped || m.TimestampMs != nil
	}
	if !stamped {
		return mf
	}
	out := &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type, Unit: mf.Unit, Metric: make([]*dto.Metric, len(mf.Metric))}
	for i, m := range mf.Metric {
		out.Metric[i] = &dto.Metric{Label: m.Label, Gauge: m.Gauge, Counter: m.Counter, Summary: m.Summary, Untyped: m.Untyped, Histogram: m.Histogram}
	}
	return out
}

// send delivers the spool, oldest first, until ctx ends. In final mode
// (the clean stop) it returns once the spool is empty, and gives up while
// the breaker is open: the receiver is down, and the next start sends the
// rest.
func (p *Pusher) send(ctx context.Context, final bool) {
	for ctx.Err() == nil {
		f, body, ok, err := p.spool.take()
		if err != nil {
			if n, ok := p.spoolErrs.Allow(); ok {
				p.log.Warn("cannot read a spooled snapshot", "err", err, "suppressed_since_last", n)
			}
			continue
		}
		if !ok {
			if final {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-p.spool.notify:
			}
			continue
		}
		if d := p.br.Wait(time.Now()); d > 0 {
			p.spool.release()
			if final || !rawtrace.Sleep(ctx, d) {
				return
			}
			continue
		}
		err = p.push(ctx, f, body)
		var perm *rawtrace.PermanentError
		switch {
		case err == nil:
			p.spool.done(f)
			p.m.sent.Inc()
			p.m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
		case errors.As(err, &perm):
			p.spool.done(f)
			p.m.rejected.Inc()
			if n, ok := p.rejects.Allow(); ok {
				p.log.Warn("pushgw refused a metrics snapshot; dropped", "batch", f.meta.Batch, "err", err, "suppressed_since_last", n)
			}
		case ctx.Err() != nil:
			p.spool.release() // cut short by the stop, which sends it again
			return
		default:
			p.spool.release()
			p.m.failed.Inc()
			if p.br.Failure(time.Now()) {
				p.m.breakerOpen.Set(1)
				p.log.Warn("pushgw unreachable, circuit breaker open: no push until the probe", "failures", p.delivery.BreakerFailures, "probe_in", p.delivery.BreakerProbe, "err", err)
			} else if n, ok := p.pushErrs.Allow(); ok {
				p.log.Warn("cannot push metrics; retrying", "err", err, "suppressed_since_last", n)
			}
			if p.br.Open() {
				continue // the breaker says when
			}
			wait := p.delivery.Backoff(p.br.Failed())
			if ra := retryAfter(err); ra > wait {
				wait = min(ra, p.delivery.BreakerProbe)
			}
			if !rawtrace.Sleep(ctx, wait) {
				return
			}
			continue
		}
		// pushgw answered: it is reachable.
		if p.br.Success() {
			p.m.breakerOpen.Set(0)
			p.log.Info("pushgw reachable again, circuit breaker closed")
		}
	}
}

// push sends one snapshot within the timeout.
func (p *Pusher) push(ctx context.Context, f snapshotFile, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	h := http.Header{}
	h.Set(HeaderBatch, f.meta.Batch.String())
	h.Set(HeaderTime, strconv.FormatInt(f.meta.Time.UnixMilli(), 10))
	if f.meta.Interval > 0 {
		h.Set(HeaderInterval, f.meta.Interval.String())
	}
	start := time.Now()
	err := p.post.post(ctx, body, MetricsContentType, h)
	p.m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("cannot push snapshot %s: %w", f.meta.Batch, err)
	}
	return nil
}

// errorBodyBytes is how much of a refusal's body an error quotes: pushgw
// answers one line.
const errorBodyBytes = 200

// drainBytes is the most of a response body read to let its connection be
// reused.
const drainBytes = 64 << 10

// poster sends gzipped bodies to one pushgw endpoint with the token, job
// and instance headers. Its methods may be called concurrently.
type poster struct {
	url       string
	shown     string      // the endpoint as errors and logs show it
	header    http.Header // sent on every request
	client    *http.Client
	transport *http.Transport
}

func newPoster(cfg Config, path, job, instance string) (*poster, error) {
	base, err := baseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("push.url: %w", err)
	}
	token, err := ReadToken(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("push.token-file: %w", err)
	}
	tc, err := cfg.TLS.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("push.tls: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 2 // one push at a time
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("User-Agent", "bitville-apm/"+buildinfo.Get().Version)
	h.Set(HeaderJob, job)
	h.Set(HeaderInstance, instance)
	u := endpoint(base, path)
	// No Timeout on the client: each push is bounded by its context.
	return &poster{url: u, shown: u, header: h, client: &http.Client{Transport: tr}, transport: tr}, nil
}

// retryError is a failure worth retrying, with the wait pushgw asked for
// (Retry-After), if any.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// retryAfter is the wait a failure asked for; 0 if none.
func retryAfter(err error) time.Duration {
	var re *retryError
	if errors.As(err, &re) {
		return re.after
	}
	return 0
}

// post sends body (gzipped) with contentType and the headers of h besides
// the poster's own, and classifies pushgw's answer: nil for 2xx, a
// *rawtrace.PermanentError for a refusal of the body itself (400, 413,
// 415, 422), and a *retryError for the rest (401, 403, 429, 5xx,
// network errors).
func (p *poster) post(ctx context.Context, body []byte, contentType string, h http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return &rawtrace.PermanentError{Err: fmt.Errorf("cannot build the request to %s: %w", p.shown, err)}
	}
	for k, v := range p.header {
		req.Header[k] = v
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := p.client.Do(req)
	if err != nil {
		return &retryError{err: fmt.Errorf("cannot post to %s: %w", p.shown, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	err = fmt.Errorf("%s answered HTTP %d: %s", p.shown, resp.StatusCode, rawtrace.QuoteBody(head))
	if permanentStatus(resp.StatusCode) {
		return &rawtrace.PermanentError{Err: err}
	}
	return &retryError{err: err, after: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

// permanentStatus says whether pushgw refused the body itself, which
// sending it again cannot fix. A wrong token (401, 403) is retried: it is
// a setting someone fixes, and the spool keeps the snapshots until then.
func permanentStatus(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date
// (RFC 9110, section 10.2.3); 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// close lets go of the kept-alive connections.
func (p *poster) close() {
	p.transport.CloseIdleConnections()
}
