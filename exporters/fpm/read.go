package fpm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/bitville/bitville-apm/internal/fastcgi"
	"github.com/bitville/bitville-apm/internal/labelset"
	"github.com/bitville/bitville-apm/internal/periodic"
)

// cacheTTL is how long a status read is reused: two scrapes (or a scrape
// and an API call) within it reach php-fpm once.
const cacheTTL = time.Second

// maxPoolLabel bounds a pool name used as a label value.
const maxPoolLabel = 64

// Reasons a status read fails; the reason label of
// bitville_fpm_status_errors_total.
const (
	errConnect    = "connect"     // cannot connect to the socket
	errTimeout    = "timeout"     // no complete answer within --fpm.status-timeout
	errFastCGI    = "fastcgi"     // the connection broke or the answer is not FastCGI
	errHTTPStatus = "http_status" // the answer is not 200 (status page not enabled at that path?)
	errParse      = "parse"       // the body is not the JSON status page
)

var errReasons = []string{errConnect, errTimeout, errFastCGI, errHTTPStatus, errParse}

// statusRead is the outcome of one status read.
type statusRead struct {
	at       time.Time
	duration time.Duration
	status   Status
	err      error
	reason   string // one of the err* reasons when err != nil
}

// statusPage is one configured pool's status page and its latest read.
type statusPage struct {
	target Target
	client *fastcgi.Client

	mu     sync.Mutex // held for a read, so concurrent callers wait for one read
	last   statusRead
	hasRun bool
	// label is the pool name once a read told it, else the URI; guarded by
	// Monitor.labelMu, not mu, so labels() never waits for a read.
	label string
	// long holds the requests already reported as long running, so each is
	// reported once; it keeps only those still running at the last read.
	long map[requestKey]bool
}

type requestKey struct {
	pid      int
	started  int64
	requests uint64
}

// statusParams are the CGI variables of a status request. php-fpm matches
// pm.status_path against SCRIPT_NAME; SCRIPT_FILENAME is what a web server
// would send too.
func statusParams(t Target) map[string]string {
	return map[string]string{
		"GATEWAY_INTERFACE": "FastCGI/1.0",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_SOFTWARE":   "bitville-apm",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       t.Path,
		"SCRIPT_FILENAME":   t.Path,
		"REQUEST_URI":       t.Path + "?json&full",
		"QUERY_STRING":      "json&full",
		"REMOTE_ADDR":       "127.0.0.1",
	}
}

// read returns p's status, read now unless the last read is younger than
// cacheTTL. A fresh successful read reports newly long-running workers.
func (m *Monitor) read(ctx context.Context, p *statusPage) statusRead {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hasRun && m.now().Sub(p.last.at) < cacheTTL {
		return p.last
	}
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StatusTimeout)
	defer cancel()
	r := statusRead{at: m.now()}
	resp, err := p.client.Do(ctx, statusParams(p.target))
	if perr := parent.Err(); perr != nil {
		// The caller gave up (agent stopping, API client gone): not a
		// php-fpm problem, so neither cached nor counted.
		return statusRead{at: r.at, duration: time.Since(start), err: fmt.Errorf("status read of %s abandoned: %w", p.target.URI, perr), reason: errTimeout}
	}
	switch {
	case err != nil:
		r.err, r.reason = err, classifyError(err)
	case resp.Status != 200:
		r.err = fmt.Errorf("status page answered %d (is pm.status_path %s set in this pool?): %s", resp.Status, p.target.Path, firstLine(resp.Body, resp.Stderr))
		r.reason = errHTTPStatus
	default:
		r.status, r.err = parseStatus(resp.Body)
		if r.err != nil {
			r.reason = errParse
		}
	}
	r.duration = time.Since(start)
	if r.err != nil {
		r.err = fmt.Errorf("cannot read php-fpm status %s: %w", p.target.URI, r.err)
		m.errors.WithLabelValues(m.labels()[slices.Index(m.pools, p)], r.reason).Inc()
		if n, ok := m.logs.Allow(); ok {
			m.log.Warn("php-fpm status read failed", "uri", p.target.URI, "reason", r.reason, "err", r.err, "suppressed_since_last", n)
		}
	} else if name := labelset.Truncate(r.status.Pool, maxPoolLabel); name != p.label {
		m.labelMu.Lock()
		p.label = name
		m.labelMu.Unlock()
		// Reasons start at zero, so a rate over the first error works.
		l := m.labels()[slices.Index(m.pools, p)]
		for _, reason := range errReasons {
			m.errors.WithLabelValues(l, reason)
		}
		m.slow.knownPool(name, r.at)
	}
	p.last, p.hasRun = r, true
	if r.err == nil {
		m.reportLong(p, r)
	}
	return r
}

// firstLine is a short excerpt of a failed response for the error message.
func firstLine(body, stderr []byte) string {
	s := bytes.TrimSpace(stderr)
	if len(s) == 0 {
		s = bytes.TrimSpace(body)
	}
	if i := bytes.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return labelset.Truncate(string(s), 200)
}

// classifyError maps a fastcgi.Client error to a reason: a timeout, a
// failed dial, or else a broken connection or protocol (fastcgi).
func classifyError(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return errTimeout
	case errors.As(err, &op) && op.Op == "dial":
		return errConnect
	}
	return errFastCGI
}

// readAll reads every pool concurrently, so one slow pool costs one
// timeout, not one per pool.
func (m *Monitor) readAll(ctx context.Context) []statusRead {
	out := make([]statusRead, len(m.pools))
	var wg sync.WaitGroup
	for i, p := range m.pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = m.read(ctx, p)
		}()
	}
	wg.Wait()
	return out
}

// labels returns the pool label of each pool. Two status pages that name
// the same pool (two php-fpm masters with a pool "www" each) get the URI
// appended to the later one so their series stay apart.
func (m *Monitor) labels() []string {
	out := make([]string, len(m.pools))
	used := make(map[string]bool, len(m.pools))
	m.labelMu.Lock()
	defer m.labelMu.Unlock()
	for i, p := range m.pools {
		l := p.label
		if used[l] {
			l = l + "@" + p.target.URI
		}
		used[l] = true
		out[i] = l
	}
	return out
}

// poll reads the status pages every interval until ctx ends, so that
// long-running workers are reported even when nobody scrapes.
func (m *Monitor) poll(ctx context.Context, every time.Duration) {
	if len(m.pools) == 0 || every <= 0 {
		return
	}
	periodic.Every(ctx, every, func() { m.readAll(ctx) })
}
