package pushgw

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
	"github.com/bitville/bitville-apm/internal/promtest"
)

// testRemoteWriteConfig is the default configuration pointed at url, with
// short backoffs so that retries do not slow the tests.
func testRemoteWriteConfig(t testing.TB, url string) RemoteWriteConfig {
	t.Helper()
	var c RemoteWriteConfig
	if err := flagdefaults.Apply(&c); err != nil {
		t.Fatal(err)
	}
	c.URL = url
	c.BackoffMin, c.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	return c
}

// receiver is a remote-write receiver that records what it takes and
// answers each request with the next status of its script (then 204).
type receiver struct {
	t *testing.T

	mu       sync.Mutex
	statuses []int
	got      [][]decodedSample // per request taken
	headers  []http.Header     // per request, taken or not
	arrived  chan struct{}     // a request was answered
}

func newReceiver(t *testing.T, statuses ...int) (*receiver, *httptest.Server) {
	rc := &receiver{t: t, statuses: statuses, arrived: make(chan struct{}, 1000)}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() { rc.arrived <- struct{}{} }()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("receiver: %v", err)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.headers = append(rc.headers, r.Header.Clone())
	status := http.StatusNoContent
	if len(rc.statuses) > 0 {
		status, rc.statuses = rc.statuses[0], rc.statuses[1:]
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "0")
	}
	if status/100 != 2 {
		http.Error(w, fmt.Sprintf("scripted status %d", status), status)
		return
	}
	d, err := decodeWriteRequest(body)
	if err != nil {
		rc.t.Errorf("receiver: cannot decode a request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.got = append(rc.got, d)
	w.WriteHeader(status)
}

// values returns "series value" for everything taken, in arrival order.
func (rc *receiver) values() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, req := range rc.got {
		for _, d := range req {
			out = append(out, fmt.Sprintf("%s %g", d.key(), d.Value))
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a noisy machine: the deadline is a hang guard, not a timing
// assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runWriter runs w until the test ends or the returned stop is called,
// which waits for Run to return.
func runWriter(t *testing.T, w *RemoteWriter) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30s of its context's end")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func gaugeSnapshot(t testing.TB, value int) *Snapshot {
	return newTestSnapshot(t, rwMeta, fmt.Sprintf("# TYPE g gauge\ng %d\n", value))
}

func gaugeLine(value int) string {
	return fmt.Sprintf(`{__name__="g",instance="web-1",job="bitville-apm-agent",project="shop"} %d`, value)
}

func metricsOf(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	return promtest.Series(t, reg, "bitville_pushgw_remote_write_")
}

func TestRemoteWriterSendsInOrder(t *testing.T) {
	rc, srv := newReceiver(t)
	reg := prometheus.NewRegistry()
	cfg := testRemoteWriteConfig(t, srv.URL+"/api/v1/write")
	cfg.Headers = map[string]string{"X-Scope-OrgID": "tenant-1"}
	auth := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(auth, []byte("user:secret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.AuthFile = auth
	w, err := NewRemoteWriter(cfg, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		w.Enqueue(gaugeSnapshot(t, i))
	}
	stop := runWriter(t, w)
	waitFor(t, "three requests", func() bool { return len(rc.values()) == 3 })
	stop()

	want := []string{gaugeLine(1), gaugeLine(2), gaugeLine(3)}
	if got := rc.values(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	h := rc.headers[0]
	for name, want := range map[string]string{
		"Content-Type":                      "application/x-protobuf",
		"Content-Encoding":                  "snappy",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
		"X-Scope-Orgid":                     "tenant-1",
		"Authorization":                     "Basic " + base64.StdEncoding.EncodeToString([]byte("user:secret")),
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s: got %q; want %q", name, got, want)
		}
	}
	m := metricsOf(t, reg)
	for k, want := range map[string]float64{
		`bitville_pushgw_remote_write_requests_total{result=sent}`:    3,
		`bitville_pushgw_remote_write_requests_total{result=failed}`:  0,
		`bitville_pushgw_remote_write_requests_total{result=dropped}`: 0,
		`bitville_pushgw_remote_write_samples_total{result=sent}`:     3,
		`bitville_pushgw_remote_write_queue_bytes{}`:                  0,
		`bitville_pushgw_remote_write_duration_seconds_count{}`:       3,
	} {
		if m[k] != want {
			t.Errorf("%s: got %v; want %v", k, m[k], want)
		}
	}
	if !w.Healthy() {
		t.Error("Healthy: got false; want true")
	}
}

func TestRemoteWriterAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []int
		taken    []string
		sent     float64
		failed   float64
		dropped  float64
	}{
		{"400 drops, the next goes on", []int{400}, []string{gaugeLine(2)}, 1, 0, 1},
		{"404 drops", []int{404}, []string{gaugeLine(2)}, 1, 0, 1},
		{"500 retried", []int{500, 502}, []string{gaugeLine(1), gaugeLine(2)}, 2, 2, 0},
		{"429 retried", []int{429}, []string{gaugeLine(1), gaugeLine(2)}, 2, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, srv := newReceiver(t, tc.statuses...)
			reg := prometheus.NewRegistry()
			w, err := NewRemoteWriter(testRemoteWriteConfig(t, srv.URL), slog.New(slog.DiscardHandler), reg)
			if err != nil {
				t.Fatal(err)
			}
			w.Enqueue(gaugeSnapshot(t, 1))
			w.Enqueue(gaugeSnapshot(t, 2))
			stop := runWriter(t, w)
			waitFor(t, "the second request taken", func() bool {
				v := rc.values()
				return len(v) > 0 && v[len(v)-1] == gaugeLine(2)
			})
			stop()
			if got := rc.values(); strings.Join(got, "\n") != strings.Join(tc.taken, "\n") {
				t.Errorf("taken: got %q; want %q", got, tc.taken)
			}
			m := metricsOf(t, reg)
			for k, want := range map[string]float64{
				`bitville_pushgw_remote_write_requests_total{result=sent}`:    tc.sent,
				`bitville_pushgw_remote_write_requests_total{result=failed}`:  tc.failed,
				`bitville_pushgw_remote_write_requests_total{result=dropped}`: tc.dropped,
				`bitville_pushgw_remote_write_samples_total{result=dropped}`:  tc.dropped,
			} {
				if m[k] != want {
					t.Errorf("%s: got %v; want %v", k, m[k], want)
				}
			}
		})
	}
}

func TestRemoteWriterQueueFullDropsOldest(t *testing.T) {
	rc, srv := newReceiver(t)
	reg := prometheus.NewRegistry()
	cfg := testRemoteWriteConfig(t, srv.URL)
	size := func(v int) int { return len(encodeSnapshot(gaugeSnapshot(t, v), 1)[0].body) }
	cfg.QueueBytes = units.Base2Bytes(size(4) + size(5)) // room for the newest two
	w, err := NewRemoteWriter(cfg, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		w.Enqueue(gaugeSnapshot(t, i))
	}
	m := metricsOf(t, reg)
	if got := m[`bitville_pushgw_remote_write_requests_total{result=dropped}`]; got != 3 {
		t.Errorf("dropped: got %v; want 3", got)
	}
	if got, want := m[`bitville_pushgw_remote_write_queue_bytes{}`], float64(cfg.QueueBytes); got != want {
		t.Errorf("queue bytes: got %v; want %v", got, want)
	}
	stop := runWriter(t, w)
	waitFor(t, "two requests", func() bool { return len(rc.values()) == 2 })
	stop()
	want := []string{gaugeLine(4), gaugeLine(5)}
	if got := rc.values(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q; want the newest two, %q", got, want)
	}
}

func TestRemoteWriterStop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int // every answer
		taken   int
		dropped float64
	}{
		{"flushes the queue", http.StatusNoContent, 3, 0},
		{"gives up after the timeout", http.StatusServiceUnavailable, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			statuses := make([]int, 10000)
			for i := range statuses {
				statuses[i] = tc.status
			}
			rc, srv := newReceiver(t, statuses...)
			reg := prometheus.NewRegistry()
			cfg := testRemoteWriteConfig(t, srv.URL)
			cfg.Timeout = 300 * time.Millisecond
			w, err := NewRemoteWriter(cfg, slog.New(slog.DiscardHandler), reg)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				w.Enqueue(gaugeSnapshot(t, i))
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // stopped before it started: only the flush runs
			done := make(chan struct{})
			go func() { defer close(done); w.Run(ctx) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s")
			}
			if got := len(rc.values()); got != tc.taken {
				t.Errorf("taken: got %d; want %d", got, tc.taken)
			}
			m := metricsOf(t, reg)
			if got := m[`bitville_pushgw_remote_write_requests_total{result=dropped}`]; got != tc.dropped {
				t.Errorf("dropped: got %v; want %v", got, tc.dropped)
			}
			if got := m[`bitville_pushgw_remote_write_queue_bytes{}`]; got != 0 {
				t.Errorf("queue bytes: got %v; want 0", got)
			}
		})
	}
}

func TestRemoteWriteConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*RemoteWriteConfig)
		error string // "" when valid
	}{
		{"defaults", func(*RemoteWriteConfig) {}, ""},
		{"no url: remote write off", func(c *RemoteWriteConfig) { c.URL = "" }, ""},
		{"no scheme", func(c *RemoteWriteConfig) { c.URL = "prometheus:9090/api/v1/write" }, "remote-write.url"},
		{"ftp", func(c *RemoteWriteConfig) { c.URL = "ftp://prometheus/api/v1/write" }, "remote-write.url"},
		{"zero queue", func(c *RemoteWriteConfig) { c.QueueBytes = 0 }, "queue-bytes"},
		{"zero series", func(c *RemoteWriteConfig) { c.MaxSeriesPerSend = 0 }, "max-series-per-send"},
		{"zero timeout", func(c *RemoteWriteConfig) { c.Timeout = 0 }, "timeout"},
		{"backoff upside down", func(c *RemoteWriteConfig) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }, "backoff"},
		{"bad header name", func(c *RemoteWriteConfig) { c.Headers = map[string]string{"a b": "c"} }, "header"},
		{"bad header value", func(c *RemoteWriteConfig) { c.Headers = map[string]string{"A": "c\nd"} }, "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testRemoteWriteConfig(t, "http://127.0.0.1:9090/api/v1/write")
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.error == "" && err != nil:
				t.Errorf("got %v; want no error", err)
			case tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)):
				t.Errorf("got %v; want an error about %s", err, tc.error)
			}
		})
	}
}

func TestRemoteWriterAuthFile(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"basic", "user:pa:ss\n", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pa:ss"))},
		{"bearer", "  tok3n  \nsecond line\n", "Bearer tok3n"},
		{"empty", "\nuser:pass\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "auth")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readAuthFile(path)
			if tc.want == "" {
				if err == nil {
					t.Errorf("got %q; want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
