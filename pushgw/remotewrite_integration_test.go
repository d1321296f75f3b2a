package pushgw

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promapi"
	"github.com/bitville/bitville-apm/internal/stack"
)

// needBinary skips the test when a peer is not installed, except in CI,
// where that is a failure.
func needBinary(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if _, err2 := os.Stat("/usr/bin/" + name); err2 != nil {
			if os.Getenv("CI") != "" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
}

func startCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// integrationText is what a pushing agent sends: a counter and a classic
// histogram.
const integrationText = `# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",method="GET"} 1027
http_requests_total{code="500",method="POST"} 3
# HELP http_request_duration_seconds Request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423.5
http_request_duration_seconds_count 144320
`

// seriesKey is a series with its labels sorted, and its value.
func sampleKey(labels map[string]string, value float64) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	return fmt.Sprintf("{%s} %g", b.String(), value)
}

func snapshotKeys(s *Snapshot) []string {
	var out []string
	s.EachSample(func(ls []Label, v float64) {
		m := map[string]string{}
		for _, l := range ls {
			m[l.Name] = l.Value
		}
		out = append(out, sampleKey(m, v))
	})
	slices.Sort(out)
	return out
}

// queryUntil runs query at t until it returns want series, and returns
// them as seriesKeys, sorted.
func queryUntil(t *testing.T, c *promapi.Client, query string, at time.Time, want int) []string {
	t.Helper()
	var keys []string
	waitFor(t, fmt.Sprintf("%d series of %s", want, query), func() bool {
		samples, err := c.Query(startCtx(t), query, at)
		if err != nil {
			t.Fatalf("query %s: %v", query, err)
		}
		keys = keys[:0]
		for _, s := range samples {
			keys = append(keys, sampleKey(s.Metric, s.Value))
		}
		return len(keys) >= want
	})
	slices.Sort(keys)
	return keys
}

func TestRemoteWriteIntegration(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (writeURL, queryURL string)
		// outOfOrder: the receiver refuses a sample older than the
		// series' last one (Prometheus' TSDB does; VictoriaMetrics
		// takes it).
		outOfOrder bool
	}{
		{"prometheus", func(t *testing.T) (string, string) {
			needBinary(t, "prometheus")
			p, err := stack.StartPrometheus(startCtx(t), stack.PrometheusConfig{Dir: t.TempDir(), RemoteWriteReceiver: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Stop() })
			return p.RemoteWriteURL(), p.URL
		}, true},
		{"victoria-metrics", func(t *testing.T) (string, string) {
			needBinary(t, "victoria-metrics")
			v, err := stack.StartVictoriaMetrics(startCtx(t), stack.VictoriaMetricsConfig{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = v.Stop() })
			return v.RemoteWriteURL(), v.URL()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeURL, queryURL := tc.start(t)
			reg := prometheus.NewRegistry()
			cfg := testRemoteWriteConfig(t, writeURL)
			cfg.MaxSeriesPerSend = 4 // several requests for one snapshot
			w, err := NewRemoteWriter(cfg, slog.New(slog.DiscardHandler), reg)
			if err != nil {
				t.Fatal(err)
			}
			runWriter(t, w)
			now := time.Now().Truncate(time.Millisecond)
			meta := rwMeta
			meta.Time = now.Add(-time.Minute)
			snap := newTestSnapshot(t, meta, integrationText)
			w.Enqueue(snap)

			client, err := promapi.New(queryURL)
			if err != nil {
				t.Fatal(err)
			}
			want := snapshotKeys(snap)
			query := `{project="shop",job="bitville-apm-agent",instance="web-1"}`
			got := queryUntil(t, client, query, meta.Time, len(want))
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			m := metricsOf(t, reg)
			if got, want := m[`bitville_pushgw_remote_write_requests_total{result=sent}`], float64((len(want)+3)/4); got != want {
				t.Errorf("requests sent: got %v; want %v", got, want)
			}
			if got, want := m[`bitville_pushgw_remote_write_samples_total{result=sent}`], float64(len(want)); got != want {
				t.Errorf("samples sent: got %v; want %v", got, want)
			}

			if !tc.outOfOrder {
				return
			}
			// An older snapshot is refused (400, out of order) and
			// dropped; the newer one after it arrives.
			older, newer := meta, meta
			older.Time, newer.Time = meta.Time.Add(-30*time.Second), meta.Time.Add(30*time.Second)
			w.Enqueue(newTestSnapshot(t, older, "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",method=\"GET\"} 1000\n"))
			w.Enqueue(newTestSnapshot(t, newer, "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",method=\"GET\"} 1100\n"))
			waitFor(t, "the newer snapshot sent", func() bool {
				return metricsOf(t, reg)[`bitville_pushgw_remote_write_samples_total{result=sent}`] == float64(len(want)+1)
			})
			m = metricsOf(t, reg)
			if got := m[`bitville_pushgw_remote_write_requests_total{result=dropped}`]; got != 1 {
				t.Errorf("requests dropped: got %v; want 1", got)
			}
			if got := m[`bitville_pushgw_remote_write_samples_total{result=dropped}`]; got != 1 {
				t.Errorf("samples dropped: got %v; want 1", got)
			}
			got = queryUntil(t, client, `http_requests_total{code="200"}`, newer.Time, 1)
			if want := `{__name__="http_requests_total",code="200",instance="web-1",job="bitville-apm-agent",method="GET",project="shop"} 1100`; len(got) != 1 || got[0] != want {
				t.Errorf("got %q; want %q", got, want)
			}
		})
	}
}

// TestRemoteWriteReceiverDown: while nothing listens the writer retries and
// turns unhealthy; once the receiver listens it delivers in order and is
// healthy again.
func TestRemoteWriteReceiverDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	reg := prometheus.NewRegistry()
	w, err := NewRemoteWriter(testRemoteWriteConfig(t, "http://"+addr+"/api/v1/write"), slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	w.Enqueue(gaugeSnapshot(t, 1))
	w.Enqueue(gaugeSnapshot(t, 2))
	runWriter(t, w)
	waitFor(t, "the writer unhealthy", func() bool { return !w.Healthy() })
	if got := metricsOf(t, reg)[`bitville_pushgw_remote_write_requests_total{result=failed}`]; got < unhealthyAfter {
		t.Errorf("failed requests: got %v; want at least %d", got, unhealthyAfter)
	}

	rc := &receiver{t: t, arrived: make(chan struct{}, 1000)}
	srv := httptest.NewUnstartedServer(rc)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		srv.Close()
		t.Skipf("cannot listen on %s again (another process took the port): %v", addr, err)
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	waitFor(t, "both requests delivered", func() bool { return len(rc.values()) == 2 })
	want := []string{gaugeLine(1), gaugeLine(2)}
	if got := rc.values(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q; want %q", got, want)
	}
	waitFor(t, "the writer healthy", w.Healthy)
	m := metricsOf(t, reg)
	if got := m[`bitville_pushgw_remote_write_requests_total{result=dropped}`]; got != 0 {
		t.Errorf("dropped: got %v; want 0", got)
	}
	if got := m[`bitville_pushgw_remote_write_requests_total{result=sent}`]; got != 2 {
		t.Errorf("sent: got %v; want 2", got)
	}
}

// TestRemoteWriteReceiverRefuses: a receiver answering 400 gets each
// request once; each is dropped and counted, and the writer stays
// healthy (the receiver answers).
func TestRemoteWriteReceiverRefuses(t *testing.T) {
	rc, srv := newReceiver(t, http.StatusBadRequest, http.StatusBadRequest)
	reg := prometheus.NewRegistry()
	w, err := NewRemoteWriter(testRemoteWriteConfig(t, srv.URL), slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	w.Enqueue(newTestSnapshot(t, rwMeta, integrationText)) // 9 series
	w.Enqueue(gaugeSnapshot(t, 1))
	w.Enqueue(gaugeSnapshot(t, 2))
	stop := runWriter(t, w)
	waitFor(t, "the third request", func() bool { return len(rc.values()) == 1 })
	stop()
	if got, want := rc.values(), []string{gaugeLine(2)}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("taken: got %q; want %q", got, want)
	}
	if n := len(rc.headers); n != 3 {
		t.Errorf("requests received: got %d; want 3, none retried", n)
	}
	m := metricsOf(t, reg)
	for k, want := range map[string]float64{
		`bitville_pushgw_remote_write_requests_total{result=dropped}`: 2,
		`bitville_pushgw_remote_write_samples_total{result=dropped}`:  10,
		`bitville_pushgw_remote_write_requests_total{result=failed}`:  0,
		`bitville_pushgw_remote_write_requests_total{result=sent}`:    1,
	} {
		if m[k] != want {
			t.Errorf("%s: got %v; want %v", k, m[k], want)
		}
	}
	if !w.Healthy() {
		t.Error("Healthy: got false; want true")
	}
}
