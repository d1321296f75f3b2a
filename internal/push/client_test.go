package push

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// appRegistry is the metrics of the pushing process in the tests: one
// counter at 3.
func appRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "app_requests_total", Help: "Requests."}, []string{"code"})
	reg.MustRegister(c)
	c.WithLabelValues("200").Add(3)
	return reg
}

// startTestPusher builds a Pusher with a short interval and fast delivery
// and starts it; the returned stop is also called at cleanup.
func startTestPusher(t *testing.T, cfg Config, opts Options, g prometheus.Gatherer) (*Pusher, func()) {
	t.Helper()
	p := newTestPusher(t, cfg, opts, g)
	stop := p.Start()
	t.Cleanup(stop)
	return p, stop
}

func newTestPusher(t *testing.T, cfg Config, opts Options, g prometheus.Gatherer) *Pusher {
	t.Helper()
	if opts.Job == "" {
		opts.Job = "bitville-apm-agent"
	}
	if opts.Instance == "" {
		opts.Instance = "web-1"
	}
	p, err := newPusher(cfg, opts, g, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	p.setDelivery(fastDelivery)
	return p
}

// seqClock returns base + n seconds on its n-th call, so a snapshot's
// Bitville-Time tells its sequence number.
func seqClock(base time.Time) func() time.Time {
	var n atomic.Int64
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * time.Second) }
}

func counterValue(t *testing.T, body []byte, name string) float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("cannot parse the pushed body: %v\n%s", err, body)
	}
	mf, ok := mfs[name]
	if !ok || len(mf.Metric) != 1 {
		t.Fatalf("pushed body has no single %s:\n%s", name, body)
	}
	return mf.Metric[0].GetCounter().GetValue()
}

func batchOf(t *testing.T, r pushed) BatchID {
	t.Helper()
	b, err := ParseBatchID(r.header.Get(HeaderBatch))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPushHeadersAndBody(t *testing.T) {
	gw := newGateway(t)
	cfg := testConfig(t, gw.srv.URL+"/")
	cfg.Interval = 20 * time.Millisecond
	at := time.UnixMilli(1_790_000_000_123)
	p, stop := startTestPusher(t, cfg, Options{Job: "bitville-apm-agent", Instance: "web-1", Now: func() time.Time { return at }}, appRegistry(t))
	waitFor(t, "two pushes", func() bool { return len(gw.requests()) >= 2 })
	stop()

	reqs := delivered(gw.requests())
	for i, r := range reqs {
		want := map[string]string{
			"Authorization":    "Bearer " + testToken,
			"Content-Type":     MetricsContentType,
			"Content-Encoding": "gzip",
			HeaderJob:          "bitville-apm-agent",
			HeaderInstance:     "web-1",
			HeaderBatch:        BatchID{Boot: p.boot, Seq: uint64(i + 1)}.String(),
			HeaderTime:         "1790000000123",
			HeaderInterval:     "20ms",
		}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("push %d: header %s = %q; want %q", i+1, k, got, v)
			}
		}
		if r.method != http.MethodPost || r.path != MetricsPath {
			t.Errorf("push %d: got %s %s; want POST %s", i+1, r.method, r.path, MetricsPath)
		}
		if got := counterValue(t, r.body, "app_requests_total"); got != 3 {
			t.Errorf("push %d: app_requests_total = %g; want 3", i+1, got)
		}
	}
	if !validBoot(p.boot) {
		t.Errorf("boot %q is not 16 lowercase hex", p.boot)
	}
	if got, want := value(t, p.m.sent), float64(len(reqs)); got != want {
		t.Errorf("pushes_total{result=sent} = %g; want %g", got, want)
	}
}

// stamped is a collector whose one sample carries a timestamp.
type stamped struct{ desc *prometheus.Desc }

func (c stamped) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c stamped) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewMetricWithTimestamp(time.UnixMilli(1_700_000_000_000), prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 7))
}

func TestSnapshotsHaveNoTimestamps(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(stamped{prometheus.NewDesc("app_last_run", "Last run.", nil, nil)})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gz, err := encodeSnapshot(mfs)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(body), "# HELP app_last_run Last run.\n# TYPE app_last_run gauge\napp_last_run 7\n"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	if mfs[0].Metric[0].TimestampMs == nil {
		t.Error("encoding changed the gathered family; want it left as it was")
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// delivered are the requests pushgw took, in order, without the ones it
// would find duplicate: a push cut short by a stop may have arrived and
// is sent again.
func delivered(reqs []pushed) []pushed {
	var out []pushed
	seen := map[string]bool{}
	for _, r := range reqs {
		if b := r.header.Get(HeaderBatch); r.status/100 == 2 && !seen[b] {
			seen[b] = true
			out = append(out, r)
		}
	}
	return out
}

func TestOutageSpoolsThenDeliversInOrder(t *testing.T) {
	gw := newGateway(t)
	var down atomic.Bool
	down.Store(true)
	gw.setAnswer(func(int, http.Header) (int, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusOK, ""
	})
	app := appRegistry(t)
	mfs, err := app.Gather()
	if err != nil {
		t.Fatal(err)
	}
	one, err := encodeSnapshot(mfs) // every snapshot of app is this size
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, gw.srv.URL)
	cfg.Interval = 10 * time.Millisecond
	cfg.SpoolMaxBytes = units.Base2Bytes(3*len(one) + len(one)/2) // room for three
	base := time.UnixMilli(1_790_000_000_000)
	p, stop := startTestPusher(t, cfg, Options{Now: seqClock(base)}, app)

	waitFor(t, "snapshots dropped from the full spool", func() bool { return value(t, p.m.spool.dropped) >= 3 })
	if n, bytes := p.spool.len(); n > 3 || bytes > int64(cfg.SpoolMaxBytes) {
		t.Errorf("spool holds %d snapshots, %d bytes; want at most 3 within %d", n, bytes, cfg.SpoolMaxBytes)
	}
	if got := value(t, p.m.breakerOpen); got != 1 {
		t.Errorf("breaker_open = %g; want 1 during the outage", got)
	}
	down.Store(false)
	waitFor(t, "the spool delivered", func() bool {
		n, _ := p.spool.len()
		return n == 0 && len(delivered(gw.requests())) > 0
	})
	stop()

	got := delivered(gw.requests())
	var last uint64
	for _, r := range got {
		b := batchOf(t, r)
		if b.Boot != p.boot || b.Seq <= last {
			t.Fatalf("delivered %s after seq %d; want seqs of boot %s, increasing", b, last, p.boot)
		}
		last = b.Seq
		if want := strconv.FormatInt(base.Add(time.Duration(b.Seq)*time.Second).UnixMilli(), 10); r.header.Get(HeaderTime) != want {
			t.Errorf("batch %s: Time %s; want %s, when it was gathered", b, r.header.Get(HeaderTime), want)
		}
	}
	dropped := value(t, p.m.spool.dropped)
	if int(dropped)+len(got) != int(p.seq) {
		t.Errorf("%g dropped + %d delivered; want the %d snapshots gathered", dropped, len(got), p.seq)
	}
	if first := batchOf(t, got[0]).Seq; first == 1 {
		t.Error("snapshot 1 was delivered; want the oldest dropped")
	}
	if got := value(t, p.m.breakerOpen); got != 0 {
		t.Errorf("breaker_open = %g; want 0 after recovery", got)
	}
	if value(t, p.m.failed) == 0 || value(t, p.m.lastSuccess) == 0 {
		t.Errorf("failed = %g, last_success = %g; want both set", value(t, p.m.failed), value(t, p.m.lastSuccess))
	}
}

func TestPermanentRefusalDropsOneSnapshot(t *testing.T) {
	gw := newGateway(t)
	gw.setAnswer(func(n int, _ http.Header) (int, string) {
		if n == 0 {
			return http.StatusBadRequest, ""
		}
		return http.StatusOK, ""
	})
	cfg := testConfig(t, gw.srv.URL)
	cfg.Interval = 10 * time.Millisecond
	p, stop := startTestPusher(t, cfg, Options{}, appRegistry(t))
	waitFor(t, "a push taken", func() bool { return len(delivered(gw.requests())) > 0 })
	stop()

	reqs := gw.requests()
	if got := batchOf(t, reqs[0]).Seq; got != 1 || reqs[0].status != http.StatusBadRequest {
		t.Fatalf("first push: seq %d answered %d; want seq 1 refused", got, reqs[0].status)
	}
	if got := batchOf(t, reqs[1]).Seq; got != 2 {
		t.Errorf("push after the refusal has seq %d; want 2", got)
	}
	for _, r := range reqs[1:] {
		if batchOf(t, r).Seq == 1 {
			t.Error("the refused snapshot was sent again")
		}
	}
	if got := value(t, p.m.rejected); got != 1 {
		t.Errorf("pushes_total{result=rejected} = %g; want 1", got)
	}
}

func TestRestartSendsLeftoversFirst(t *testing.T) {
	gw := newGateway(t)
	var down atomic.Bool
	down.Store(true)
	gw.setAnswer(func(int, http.Header) (int, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusOK, ""
	})
	cfg := testConfig(t, gw.srv.URL)
	cfg.Interval = 10 * time.Millisecond
	cfg.Timeout = time.Second
	first, stop := startTestPusher(t, cfg, Options{}, appRegistry(t))
	waitFor(t, "snapshots spooled", func() bool { n, _ := first.spool.len(); return n >= 3 })
	stop()
	left, _ := first.spool.len()

	down.Store(false)
	second, stop := startTestPusher(t, cfg, Options{}, appRegistry(t))
	waitFor(t, "a push of the new run", func() bool {
		for _, r := range delivered(gw.requests()) {
			if batchOf(t, r).Boot == second.boot {
				return true
			}
		}
		return false
	})
	stop()

	if first.boot == second.boot {
		t.Fatalf("both runs have boot %s; want a new one per start", first.boot)
	}
	got := delivered(gw.requests())
	var last uint64
	for i, r := range got {
		b := batchOf(t, r)
		if i < left {
			if b.Boot != first.boot || b.Seq <= last {
				t.Fatalf("push %d is %s; want the first run's leftovers in order first", i+1, b)
			}
			last = b.Seq
			continue
		}
		if b.Boot != second.boot {
			t.Errorf("push %d is %s; want the new run's after the %d leftovers", i+1, b, left)
		}
	}
	if last != first.seq {
		t.Errorf("the leftovers end at seq %d; want the first run's last, %d", last, first.seq)
	}
}

func TestSpoolDirTakenByAnotherPusher(t *testing.T) {
	gw := newGateway(t)
	cfg := testConfig(t, gw.srv.URL)
	cfg.Interval = time.Hour
	first := newTestPusher(t, cfg, Options{}, appRegistry(t))
	if _, err := newPusher(cfg, Options{Job: "j", Instance: "i"}, appRegistry(t), prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Pusher on the spool: got %v; want an in-use error", err)
	}
	first.Start()()
	third := newTestPusher(t, cfg, Options{}, appRegistry(t))
	third.Start()()
}

func TestStopDeliversTheLastSnapshot(t *testing.T) {
	gw := newGateway(t)
	cfg := testConfig(t, gw.srv.URL)
	cfg.Interval = time.Hour
	p, err := NewPusher(cfg, Options{Job: "bitville-apm-pg-exporter", Instance: "db-1"}, appRegistry(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	stop := p.Start()
	stop()
	stop() // a second stop does nothing

	reqs := gw.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d pushes; want the one of the stop", len(reqs))
	}
	if got, want := reqs[0].header.Get(HeaderBatch), (BatchID{Boot: p.boot, Seq: 1}).String(); got != want {
		t.Errorf("batch %s; want %s", got, want)
	}
	if got := reqs[0].header.Get(HeaderInterval); got != "1h0m0s" {
		t.Errorf("interval %q; want 1h0m0s", got)
	}
	if got := counterValue(t, reqs[0].body, "app_requests_total"); got != 3 {
		t.Errorf("app_requests_total = %g; want 3", got)
	}
	if n, _ := p.spool.len(); n != 0 {
		t.Errorf("%d snapshots left in the spool; want none", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"seconds", "120", 2 * time.Minute},
		{"zero", "0", 0},
		{"date", "Thu, 01 Jan 2026 00:01:00 GMT", time.Minute},
		{"past date", "Wed, 31 Dec 2025 23:00:00 GMT", 0},
		{"negative", "-1", 0},
		{"garbage", "soon", 0},
		{"absent", "", 0},
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %s; want %s", tt.in, got, tt.want)
			}
		})
	}
}
