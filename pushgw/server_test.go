package pushgw

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/bitville/bitville-apm/internal/web"
)

const (
	shopToken = "shop-token-0123456789"
	blogToken = "blog-token-0123456789"
)

// testGateway is a Server behind the real web server (its timeouts are
// part of what is tested), with its registry.
type testGateway struct {
	*Server
	base   string
	reg    *prometheus.Registry
	events *recordingSink
}

// recordingSink keeps what the gateway forwards.
type recordingSink struct {
	mu     sync.Mutex
	events []rawtrace.Event
}

func (r *recordingSink) Admit(string, rawtrace.Priority) bool { return true }
func (r *recordingSink) Emit(e rawtrace.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}
func (r *recordingSink) Enabled() bool { return true }
func (r *recordingSink) Healthy() bool { return true }
func (r *recordingSink) all() []rawtrace.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]rawtrace.Event(nil), r.events...)
}

func testConfig(t *testing.T) Config {
	t.Helper()
	var cfg Config
	if err := flagdefaults.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.TokensFile = filepath.Join(dir, "tokens.yml")
	if err := os.WriteFile(cfg.TokensFile, []byte("projects:\n  shop: "+shopToken+"\n  blog: "+sha(blogToken)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startGateway(t *testing.T, cfg Config) *testGateway {
	t.Helper()
	tokens, err := NewTokenSource(cfg.TokensFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sink := &recordingSink{}
	srv, err := New(cfg, Options{Tokens: tokens, Events: sink, Version: "test"}, reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws := web.New(ln, "", srv.Handler(reg), slog.New(slog.DiscardHandler))
	ws.SetLimits(cfg.ReadTimeout, cfg.IdleTimeout, 64<<10)
	go func() { _ = ws.Serve() }()
	t.Cleanup(func() { _ = ws.Shutdown(t.Context()) })
	return &testGateway{Server: srv, base: "http://" + ln.Addr().String(), reg: reg, events: sink}
}

// agentExposition is a small agent-like /metrics body with a counter per
// endpoint and a histogram.
func agentExposition(project string, requests float64) string {
	return fmt.Sprintf(`# HELP bitville_php_requests_total Requests.
# TYPE bitville_php_requests_total counter
bitville_php_requests_total{project=%q,endpoint="GET /a",status="2xx"} %g
bitville_php_requests_total{project=%q,endpoint="GET /b",status="5xx"} 3
# HELP bitville_php_request_duration_seconds Wall time.
# TYPE bitville_php_request_duration_seconds histogram
bitville_php_request_duration_seconds_bucket{project=%q,endpoint="GET /a",le="0.1"} 5
bitville_php_request_duration_seconds_bucket{project=%q,endpoint="GET /a",le="+Inf"} 7
bitville_php_request_duration_seconds_sum{project=%q,endpoint="GET /a"} 1.5
bitville_php_request_duration_seconds_count{project=%q,endpoint="GET /a"} 7
`, project, requests, project, project, project, project, project)
}

type pushReq struct {
	token, job, instance string
	batch                push.BatchID
	time                 time.Time
	contentType          string
	gzip                 bool // compress body
	gzipped              bool // body is gzip already
	body                 io.Reader
}

func (g *testGateway) push(t *testing.T, p pushReq) (int, string, http.Header) {
	t.Helper()
	if p.job == "" {
		p.job = "bitville-apm-agent"
	}
	if p.instance == "" {
		p.instance = "web-1"
	}
	if p.batch.Boot == "" {
		p.batch.Boot = "0123456789abcdef"
	}
	if p.time.IsZero() {
		p.time = time.Now()
	}
	body := p.body
	if p.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		if _, err := io.Copy(zw, body); err != nil {
			t.Fatal(err)
		}
		_ = zw.Close()
		body = &b
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, g.base+push.MetricsPath, body)
	if err != nil {
		t.Fatal(err)
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	ct := p.contentType
	if ct == "" {
		ct = push.MetricsContentType
	}
	req.Header.Set("Content-Type", ct)
	if p.gzip || p.gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set(push.HeaderJob, p.job)
	req.Header.Set(push.HeaderInstance, p.instance)
	req.Header.Set(push.HeaderBatch, p.batch.String())
	req.Header.Set(push.HeaderTime, strconv.FormatInt(p.time.UnixMilli(), 10))
	req.Header.Set(push.HeaderInterval, "15s")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (g *testGateway) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(g.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// pushedLines are the lines of a scrape that came from pushes of project.
func pushedLines(exposition, project string) string {
	var out []string
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, "bitville_php_") && (strings.Contains(l, `,project="`+project+`"`) || strings.Contains(l, `{project="`+project+`"`)) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (g *testGateway) rejected(project, reason string) float64 {
	return counterValue(g.m.rejected.WithLabelValues(project, kindMetrics, reason))
}

// TestAbuse: every abuse of the issue is refused with its status and
// counted by reason, nothing of a refused push lands, and the other
// project keeps pushing.
func TestAbuse(t *testing.T) {
	cfg := testConfig(t)
	cfg.SamplesRate, cfg.SamplesBurst = 100, cfg.MaxSeriesPerPush
	g := startGateway(t, cfg)

	seq := uint64(0)
	next := func() push.BatchID { seq++; return push.BatchID{Boot: "0123456789abcdef", Seq: seq} }
	if code, body, _ := g.push(t, pushReq{token: blogToken, batch: next(), body: strings.NewReader(agentExposition("blog", 10))}); code != 200 {
		t.Fatalf("blog's first push: got %d %s; want 200", code, body)
	}
	if code, body, _ := g.push(t, pushReq{token: shopToken, instance: "web-2", batch: next(), gzip: true, body: strings.NewReader(agentExposition("shop", 1))}); code != 200 {
		t.Fatalf("shop's first push: got %d %s; want 200", code, body)
	}
	blogBefore := pushedLines(g.scrape(t), "blog")
	if !strings.Contains(blogBefore, `bitville_php_requests_total{project="blog",endpoint="GET /a",status="2xx",job="bitville-apm-agent",instance="web-1"} 10`) &&
		!strings.Contains(blogBefore, `endpoint="GET /a"`) {
		t.Fatalf("blog's series missing after its push:\n%s", blogBefore)
	}
	blogOK := func(when string) {
		t.Helper()
		code, body, _ := g.push(t, pushReq{token: blogToken, instance: "web-9", batch: next(), body: strings.NewReader(agentExposition("blog", 1))})
		if code != 200 {
			t.Errorf("%s: blog's push got %d %s; want 200 (the other project is unaffected)", when, code, body)
		}
	}

	hundredMB := io.LimitReader(zeros{}, 100<<20)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = io.Copy(zw, io.LimitReader(zeros{}, int64(cfg.MaxDecodedBytes)+1<<20))
	_ = zw.Close()
	var million bytes.Buffer
	million.WriteString("# TYPE flood gauge\n")
	for i := 0; i < 1_000_000; i++ {
		fmt.Fprintf(&million, "flood{i=\"%d\"} 1\n", i)
	}
	old := time.Now().Add(-2 * cfg.MaxSampleAge)

	cases := []struct {
		name   string
		req    pushReq
		status int
		reason string
	}{
		{"no token", pushReq{body: strings.NewReader(agentExposition("shop", 2))}, 401, ReasonUnauthorized},
		{"wrong token", pushReq{token: "guess-0123456789abcdef", body: strings.NewReader(agentExposition("shop", 2))}, 401, ReasonUnauthorized},
		{"the hash as token", pushReq{token: sha(blogToken), body: strings.NewReader(agentExposition("blog", 2))}, 401, ReasonUnauthorized},
		{"a 100 MB body", pushReq{token: shopToken, body: hundredMB}, 413, ReasonBodyTooLarge},
		{"a gzip bomb", pushReq{token: shopToken, gzipped: true, body: bytes.NewReader(bomb.Bytes())}, 413, ReasonBodyTooLarge},
		{"a million series", pushReq{token: shopToken, gzip: true, body: bytes.NewReader(million.Bytes())}, 413, ReasonSeriesLimit},
		{"malformed", pushReq{token: shopToken, body: strings.NewReader("bitville_php_requests_total{project=\"shop\" 1\n")}, 400, ReasonMalformed},
		{"bad label name", pushReq{token: shopToken, body: strings.NewReader("x{1a=\"b\"} 1\n")}, 400, ReasonLabelName},
		{"too many labels", pushReq{token: shopToken, body: strings.NewReader("x{" + manyLabels(40) + "} 1\n")}, 400, ReasonTooManyLabels},
		{"an ancient snapshot", pushReq{token: shopToken, time: old, body: strings.NewReader(agentExposition("shop", 2))}, 400, ReasonAncientTimestamp},
		{"a future snapshot", pushReq{token: shopToken, time: time.Now().Add(time.Hour), body: strings.NewReader(agentExposition("shop", 2))}, 400, ReasonFutureTimestamp},
		{"a sample timestamp", pushReq{token: shopToken, body: strings.NewReader("x 1 1700000000000\n")}, 400, ReasonSampleTimestamp},
		{"wrong content type", pushReq{token: shopToken, contentType: "application/json", body: strings.NewReader("{}")}, 415, ReasonContentType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			project := "shop"
			if c.reason == ReasonUnauthorized {
				project = unknownProject
			}
			if c.req.batch.Seq == 0 {
				c.req.batch = next()
			}
			before := g.rejected(project, c.reason)
			shopBefore := pushedLines(g.scrape(t), "shop")
			code, body, _ := g.push(t, c.req)
			// A client still sending a huge body may see the connection
			// closed before it reads the answer; the count tells.
			if code != c.status && !(code == 0 && c.status == 413) {
				t.Errorf("got %d %s; want %d", code, body, c.status)
			}
			if got := g.rejected(project, c.reason); got != before+1 {
				t.Errorf("rejected{reason=%s} = %v; want %v", c.reason, got, before+1)
			}
			if after := pushedLines(g.scrape(t), "shop"); after != shopBefore {
				t.Errorf("a refused push changed shop's series:\nbefore\n%s\nafter\n%s", shopBefore, after)
			}
			blogOK(c.name)
		})
	}

	t.Run("another project's series", func(t *testing.T) {
		code, body, _ := g.push(t, pushReq{token: shopToken, instance: "web-2", batch: next(), body: strings.NewReader(agentExposition("blog", 666))})
		if code != 200 {
			t.Fatalf("got %d %s; want 200 (rewritten)", code, body)
		}
		out := g.scrape(t)
		if strings.Contains(out, " 666") && !strings.Contains(pushedLines(out, "shop"), `exported_project="blog"`) {
			t.Errorf("shop's claim of blog's series landed outside project shop:\n%s", out)
		}
		for _, l := range strings.Split(pushedLines(out, "blog"), "\n") {
			if strings.Contains(l, "666") {
				t.Errorf("shop's token wrote blog's series: %s", l)
			}
		}
		if got := counterValue(g.m.rewritten.WithLabelValues("shop", kindMetrics)); got == 0 {
			t.Error("rewritten_total{project=shop} = 0; want the claimed series counted")
		}
	})

	t.Run("replayed batch", func(t *testing.T) {
		b := next()
		if code, body, _ := g.push(t, pushReq{token: shopToken, instance: "web-3", batch: b, body: strings.NewReader(agentExposition("shop", 5))}); code != 200 {
			t.Fatalf("got %d %s; want 200", code, body)
		}
		code, body, _ := g.push(t, pushReq{token: shopToken, instance: "web-3", batch: b, body: strings.NewReader(agentExposition("shop", 500))})
		if code != 200 || !strings.Contains(body, `"duplicate"`) {
			t.Errorf("replay: got %d %s; want 200 duplicate", code, body)
		}
		if out := g.scrape(t); strings.Contains(out, `instance="web-3"`) && strings.Contains(pushedLines(out, "shop"), " 500") {
			t.Errorf("a replayed batch was applied:\n%s", pushedLines(out, "shop"))
		}
	})

	t.Run("flood past the project's rate", func(t *testing.T) {
		var big strings.Builder
		big.WriteString("# TYPE flood gauge\n")
		for i := 0; i < cfg.MaxSeriesPerPush/2; i++ {
			fmt.Fprintf(&big, "flood{i=\"%d\"} 1\n", i)
		}
		limited := false
		for i := 0; i < 5 && !limited; i++ {
			code, body, h := g.push(t, pushReq{token: shopToken, instance: "flooder", batch: next(), gzip: true, body: strings.NewReader(big.String())})
			switch code {
			case 200:
			case 429:
				limited = true
				if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
					t.Errorf("429 with Retry-After %q; want whole seconds", h.Get("Retry-After"))
				}
			default:
				t.Fatalf("flood push %d: got %d %s", i, code, body)
			}
		}
		if !limited {
			t.Fatal("five pushes of half the burst each were never refused with 429")
		}
		if got := g.rejected("shop", ReasonRateLimited); got < 1 {
			t.Errorf("rejected{reason=rate_limited} = %v; want ≥ 1", got)
		}
		blogOK("during shop's flood")
	})

}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func manyLabels(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "l%d=\"v\"", i)
	}
	return b.String()
}

// counterValue reads a counter of the self-metrics.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestSlowSenders: connections that send a body slowly are cut at the
// read timeout; meanwhile the other project pushes.
func TestSlowSenders(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadTimeout = time.Second
	g := startGateway(t, cfg)
	seq := uint64(0)
	next := func() push.BatchID { seq++; return push.BatchID{Boot: "0123456789abcdef", Seq: seq} }
	blogOK := func(when string) {
		t.Helper()
		code, body, _ := g.push(t, pushReq{token: blogToken, instance: "web-9", batch: next(), body: strings.NewReader(agentExposition("blog", 1))})
		if code != 200 {
			t.Errorf("%s: blog's push got %d %s; want 200 (the other project is unaffected)", when, code, body)
		}
	}
	// Half the connections stop in their headers, half in their body.
	var conns []net.Conn
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 {
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bea", push.MetricsPath)
		} else {
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n# slow", push.MetricsPath, shopToken)
		}
		conns = append(conns, c)
	}
	blogOK("with slow senders connected")
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("slow connection %d: %v; want it closed by the gateway", i, err)
		}
	}
}
