package pushgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"

	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/throttle"
)

// RemoteWriteConfig is the forwarding of every applied push to a
// Prometheus remote-write 1.0 receiver (Prometheus with its receiver on,
// VictoriaMetrics, Mimir, Thanos). With no URL nothing is forwarded.
type RemoteWriteConfig struct {
	URL              string             `name:"remote-write.url" placeholder:"URL" help:"Prometheus remote-write 1.0 endpoint every applied push is forwarded to (http://prometheus:9090/api/v1/write, http://victoriametrics:8428/api/v1/write). Empty: no remote write."`
	AuthFile         string             `name:"remote-write.auth-file" placeholder:"FILE" help:"File holding the remote-write credentials, read at start: user:password (basic auth) or a bearer token on its first line."`
	Headers          map[string]string  `name:"remote-write.header" placeholder:"NAME=VALUE" help:"Extra HTTP header on every remote-write request (repeatable), e.g. X-Scope-OrgID=tenant."`
	TLS              rawtrace.TLSConfig `embed:"" prefix:"remote-write.tls."`
	Timeout          time.Duration      `name:"remote-write.timeout" default:"30s" help:"Time limit of one remote-write request; also how long a stop goes on sending what is queued."`
	QueueBytes       units.Base2Bytes   `name:"remote-write.queue-bytes" default:"256MiB" help:"Memory for requests waiting to be sent (compressed); when full the oldest are dropped (bitville_pushgw_remote_write_requests_total{result=\"dropped\"})."`
	MaxSeriesPerSend int                `name:"remote-write.max-series-per-send" default:"5000" help:"Most series in one remote-write request; a larger push is sent as several."`
	BackoffMin       time.Duration      `name:"remote-write.backoff-min" default:"500ms" help:"First wait after a failed remote-write request; doubled (with jitter) after each further failure."`
	BackoffMax       time.Duration      `name:"remote-write.backoff-max" default:"30s" help:"Longest wait between retries of a remote-write request."`
}

// unhealthyAfter is how many consecutive failed requests make the writer
// unhealthy: one failure is a blip, a few in a row (with the backoff
// between them, seconds) mean the receiver is down.
const unhealthyAfter = 3

// logEvery is how often a repeated problem is logged.
const logEvery = time.Minute

// errorBodyBytes is how much of a refusal's body an error quotes.
const errorBodyBytes = 256

// Validate checks the configuration. kong calls it for every run of the
// command, so no URL (remote write off) is valid.
func (c RemoteWriteConfig) Validate() error {
	if c.URL == "" {
		return nil
	}
	if _, err := parseRemoteWriteURL(c.URL); err != nil {
		return err
	}
	switch {
	case c.Timeout <= 0:
		return fmt.Errorf("--remote-write.timeout must be positive, not %s", c.Timeout)
	case c.QueueBytes <= 0:
		return fmt.Errorf("--remote-write.queue-bytes must be positive, not %d", c.QueueBytes)
	case c.MaxSeriesPerSend <= 0:
		return fmt.Errorf("--remote-write.max-series-per-send must be positive, not %d", c.MaxSeriesPerSend)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("--remote-write.backoff-min (%s) must be positive and at most --remote-write.backoff-max (%s)", c.BackoffMin, c.BackoffMax)
	}
	for k, v := range c.Headers {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("--remote-write.header: %q is not a valid HTTP header name", k)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("--remote-write.header %s: value %q is not a valid HTTP header value", k, v)
		}
	}
	return nil
}

func parseRemoteWriteURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid --remote-write.url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid --remote-write.url %q: want http(s)://host[:port]/path", u.Redacted())
	}
	return u, nil
}

// RemoteWriter forwards snapshots to a remote-write receiver. Enqueue
// encodes a snapshot into requests and queues them in memory; Run sends
// them in order, one at a time, retrying what failed. Enqueue and Healthy
// may be called from any goroutine; Run is called once.
type RemoteWriter struct {
	cfg    RemoteWriteConfig
	log    *slog.Logger
	url    string
	shown  string // url without its password, for logs and errors
	header http.Header
	client *http.Client
	m      remoteWriteMetrics

	mu     sync.Mutex
	queue  []writeRequest // oldest first
	bytes  int64          // of queue's bodies
	notify chan struct{}  // a request was queued; capacity 1

	healthy  atomic.Bool
	failed   int // consecutive failed requests; Run's own
	dropLogs *throttle.Throttle
	failLogs *throttle.Throttle
}

type remoteWriteMetrics struct {
	sentReqs, failedReqs, droppedReqs          prometheus.Counter
	sentSamples, failedSamples, droppedSamples prometheus.Counter
	queueBytes                                 prometheus.Gauge
	duration                                   prometheus.Observer
}

// NewRemoteWriter checks cfg (its URL must be set), reads the auth file
// and registers the self-metrics on reg.
func NewRemoteWriter(cfg RemoteWriteConfig, log *slog.Logger, reg prometheus.Registerer) (*RemoteWriter, error) {
	u, err := parseRemoteWriteURL(cfg.URL)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("cannot start the remote writer: %w", err)
	}
	header := http.Header{}
	for k, v := range cfg.Headers {
		header.Set(k, v)
	}
	if cfg.AuthFile != "" {
		auth, err := rawtrace.AuthHeader(cfg.AuthFile)
		if err != nil {
			return nil, fmt.Errorf("cannot start the remote writer: --remote-write.auth-file: %w", err)
		}
		header.Set("Authorization", auth)
	}
	header.Set("Content-Type", "application/x-protobuf")
	header.Set("Content-Encoding", "snappy")
	header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	tc, err := cfg.TLS.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("cannot start the remote writer: --remote-write.tls: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 1 // one request at a time
	r := &RemoteWriter{
		cfg:      cfg,
		log:      log.With("component", "remote-write"),
		url:      cfg.URL,
		shown:    u.Redacted(),
		header:   header,
		client:   &http.Client{Transport: tr}, // each request bounded by its context
		notify:   make(chan struct{}, 1),
		dropLogs: throttle.New(logEvery),
		failLogs: throttle.New(logEvery),
	}
	r.healthy.Store(true)
	if err := r.register(reg); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RemoteWriter) register(reg prometheus.Registerer) error {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bitville_pushgw_remote_write_requests_total",
		Help: "Remote-write requests by result: sent (taken by the receiver), failed (an attempt that failed and is retried), dropped (refused by the receiver for good, pushed out of the full queue, or still queued when a stop ran out of time).",
	}, []string{"result"})
	samples := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bitville_pushgw_remote_write_samples_total",
		Help: "Samples in remote-write requests, by the request's result (see bitville_pushgw_remote_write_requests_total).",
	}, []string{"result"})
	queue := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bitville_pushgw_remote_write_queue_bytes",
		Help: "Compressed bytes of the remote-write requests waiting to be sent, the one being sent excluded.",
	})
	dur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bitville_pushgw_remote_write_duration_seconds",
		Help:    "Duration of remote-write requests, failed ones included.",
		Buckets: prometheus.DefBuckets,
	})
	for _, c := range []prometheus.Collector{reqs, samples, queue, dur} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("cannot register the remote-write self-metrics: %w", err)
		}
	}
	r.m = remoteWriteMetrics{
		sentReqs: reqs.WithLabelValues("sent"), failedReqs: reqs.WithLabelValues("failed"), droppedReqs: reqs.WithLabelValues("dropped"),
		sentSamples: samples.WithLabelValues("sent"), failedSamples: samples.WithLabelValues("failed"), droppedSamples: samples.WithLabelValues("dropped"),
		queueBytes: queue, duration: dur,
	}
	return nil
}

// Enqueue encodes s into requests and queues them. It never blocks on
// the receiver: when the queue is full the oldest requests are dropped.
func (r *RemoteWriter) Enqueue(s *Snapshot) {
	reqs := encodeSnapshot(s, r.cfg.MaxSeriesPerSend)
	if len(reqs) == 0 {
		return
	}
	limit := int64(r.cfg.QueueBytes)
	var dropped, droppedSamples int
	r.mu.Lock()
	for _, req := range reqs {
		if int64(len(req.body)) > limit {
			dropped++
			droppedSamples += req.samples
			continue
		}
		for r.bytes+int64(len(req.body)) > limit {
			old := r.queue[0]
			r.queue[0] = writeRequest{}
			r.queue = r.queue[1:]
			r.bytes -= int64(len(old.body))
			dropped++
			droppedSamples += old.samples
		}
		r.queue = append(r.queue, req)
		r.bytes += int64(len(req.body))
	}
	r.m.queueBytes.Set(float64(r.bytes))
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	if dropped > 0 {
		r.m.droppedReqs.Add(float64(dropped))
		r.m.droppedSamples.Add(float64(droppedSamples))
		if n, ok := r.dropLogs.Allow(); ok {
			r.log.Warn("remote-write queue full; dropped the oldest requests", "requests", dropped, "samples", droppedSamples, "queue_bytes", limit, "suppressed_since_last", n)
		}
	}
}

// Healthy reports false after several consecutive failed requests, until
// one succeeds.
func (r *RemoteWriter) Healthy() bool { return r.healthy.Load() }

// Run sends the queued requests in order until ctx ends, then goes on
// sending what is queued for at most Timeout and drops the rest.
func (r *RemoteWriter) Run(ctx context.Context) {
	// hard ends Timeout after ctx: it bounds the last requests, the one
	// under way when ctx ends included.
	hard, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.Timeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-hard.Done(): // Run returned
		}
	})
	defer stop()
	for {
		req, ok := r.next(ctx)
		if !ok {
			break
		}
		if !r.deliver(ctx, hard, req) {
			r.drop(req)
			break
		}
	}
	if n, samples := r.dropQueue(); n > 0 {
		r.log.Warn("stopped with remote-write requests unsent; dropped", "requests", n, "samples", samples, "timeout", r.cfg.Timeout)
	}
}

// next takes the oldest queued request, waiting for one until ctx ends;
// once ctx has ended it only takes what is there.
func (r *RemoteWriter) next(ctx context.Context) (writeRequest, bool) {
	for {
		r.mu.Lock()
		if len(r.queue) > 0 {
			req := r.queue[0]
			r.queue[0] = writeRequest{}
			r.queue = r.queue[1:]
			r.bytes -= int64(len(req.body))
			r.m.queueBytes.Set(float64(r.bytes))
			r.mu.Unlock()
			return req, true
		}
		r.mu.Unlock()
		if ctx.Err() != nil {
			return writeRequest{}, false
		}
		select {
		case <-ctx.Done():
		case <-r.notify:
		}
	}
}

// deliver sends req until the receiver takes or refuses it, and reports
// false when hard ended first. After a failure it waits for the backoff,
// or not at all once ctx has ended (the stop's time is short).
func (r *RemoteWriter) deliver(ctx, hard context.Context, req writeRequest) bool {
	for {
		err := r.send(hard, req)
		var refused *refusedError
		switch {
		case err == nil:
			r.m.sentReqs.Inc()
			r.m.sentSamples.Add(float64(req.samples))
			r.succeeded()
			return true
		case errors.As(err, &refused):
			// The receiver answers, it just will not take these
			// samples (Prometheus: out of order, duplicate, too old).
			r.m.droppedReqs.Inc()
			r.m.droppedSamples.Add(float64(req.samples))
			r.succeeded()
			if n, ok := r.dropLogs.Allow(); ok {
				r.log.Warn("the remote-write receiver refused a request; dropped", "samples", req.samples, "err", err, "suppressed_since_last", n)
			}
			return true
		}
		if hard.Err() != nil {
			return false
		}
		r.m.failedReqs.Inc()
		r.m.failedSamples.Add(float64(req.samples))
		r.failed++
		if r.failed == unhealthyAfter {
			r.healthy.Store(false)
			r.log.Warn("remote-write receiver unreachable; retrying with backoff", "failures", r.failed, "err", err)
		} else if n, ok := r.failLogs.Allow(); ok {
			r.log.Info("remote-write request failed; retrying", "failures", r.failed, "err", err, "suppressed_since_last", n)
		}
		wait := rawtrace.Backoff(r.cfg.BackoffMin, r.cfg.BackoffMax, r.failed)
		var ra *retryAfterError
		if errors.As(err, &ra) {
			wait = min(max(wait, ra.after), r.cfg.BackoffMax)
		}
		if !r.sleep(ctx, hard, wait) {
			return false
		}
	}
}

func (r *RemoteWriter) succeeded() {
	if r.failed >= unhealthyAfter {
		r.log.Info("remote-write receiver reachable again", "failures", r.failed)
	}
	r.failed = 0
	r.healthy.Store(true)
}

// sleep waits d, cut short when ctx ends (the stop then retries at once)
// and reports false when hard ended.
func (r *RemoteWriter) sleep(ctx, hard context.Context, d time.Duration) bool {
	soft := ctx.Done()
	if ctx.Err() != nil {
		soft = nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-hard.Done():
		return false
	case <-soft:
	case <-t.C:
	}
	return hard.Err() == nil
}

func (r *RemoteWriter) drop(req writeRequest) {
	r.m.droppedReqs.Inc()
	r.m.droppedSamples.Add(float64(req.samples))
}

// dropQueue empties the queue, counting what it held as dropped.
func (r *RemoteWriter) dropQueue() (requests, samples int) {
	r.mu.Lock()
	q := r.queue
	r.queue, r.bytes = nil, 0
	r.m.queueBytes.Set(0)
	r.mu.Unlock()
	for _, req := range q {
		r.drop(req)
		samples += req.samples
	}
	return len(q), samples
}

// refusedError is an answer that refuses a request for good: a 4xx other
// than 429. Sending it again would get the same answer.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// retryAfterError is a failure whose answer said when to try again.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// send posts req once, within Timeout, and classifies the answer: nil
// for 2xx, a *refusedError for a 4xx other than 429, a plain error (or a
// *retryAfterError) for what is worth retrying.
func (r *RemoteWriter) send(ctx context.Context, req writeRequest) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(req.body))
	if err != nil {
		return &refusedError{fmt.Errorf("cannot build the request to %s: %w", r.shown, err)}
	}
	hr.Header = r.header.Clone()
	start := time.Now()
	resp, err := r.client.Do(hr)
	if err != nil {
		r.m.duration.Observe(time.Since(start).Seconds())
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its URL may hold a password
		}
		return fmt.Errorf("cannot post to %s: %w", r.shown, err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	r.m.duration.Observe(time.Since(start).Seconds())
	code := resp.StatusCode
	if code/100 == 2 {
		return nil
	}
	err = fmt.Errorf("%s answered HTTP %d: %s", r.shown, code, rawtrace.QuoteBody(head))
	if code/100 == 4 && code != http.StatusTooManyRequests {
		return &refusedError{err}
	}
	if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
		return &retryAfterError{err: err, after: time.Duration(s) * time.Second}
	}
	return err
}
