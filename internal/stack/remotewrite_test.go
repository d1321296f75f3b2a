package stack

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
)

// need skips the test when a peer's binary is not installed, except in
// CI, where the missing binary is a failure.
func need(t *testing.T, pkg string, names ...string) {
	t.Helper()
	if _, err := findBinary(pkg, []string{"/usr/bin"}, names...); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// postEmptyWriteRequest posts a remote-write request without series and
// returns the answer's status.
func postEmptyWriteRequest(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(startCtx(t), http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func TestVictoriaMetricsRemoteWrite(t *testing.T) {
	need(t, "victoria-metrics", "victoria-metrics", "victoria-metrics-prod")
	v, err := StartVictoriaMetrics(startCtx(t), VictoriaMetricsConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = v.Stop() }()
	if got := postEmptyWriteRequest(t, v.RemoteWriteURL()); got/100 != 2 {
		t.Errorf("remote write: got HTTP %d; want 2xx", got)
	}
	if code, body := get(t, v.URL()+"/api/v1/query?query=1"); code != http.StatusOK || !strings.Contains(body, `"success"`) {
		t.Errorf("query: got HTTP %d %s; want 200 and success", code, body)
	}
}

func TestPrometheusRemoteWriteReceiver(t *testing.T) {
	need(t, "prometheus", "prometheus")
	for _, tc := range []struct {
		name    string
		enabled bool
		ok      bool
	}{
		{"enabled", true, true},
		{"disabled", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := StartPrometheus(startCtx(t), PrometheusConfig{Dir: t.TempDir(), RemoteWriteReceiver: tc.enabled})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = p.Stop() }()
			if got := postEmptyWriteRequest(t, p.RemoteWriteURL()); (got/100 == 2) != tc.ok {
				t.Errorf("remote write: got HTTP %d; want 2xx %v", got, tc.ok)
			}
		})
	}
}

func TestPushgateway(t *testing.T) {
	need(t, "prometheus-pushgateway", "prometheus-pushgateway", "pushgateway")
	g, err := StartPushgateway(startCtx(t), PushgatewayConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Stop() }()
	req, err := http.NewRequestWithContext(startCtx(t), http.MethodPut, g.URL+"/metrics/job/stack-test", strings.NewReader("# TYPE probe gauge\nprobe 42\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push: got HTTP %d; want 2xx", resp.StatusCode)
	}
	want := `probe{instance="",job="stack-test"} 42`
	if code, body := get(t, g.URL+"/metrics"); code != http.StatusOK || !strings.Contains(body, want) {
		t.Errorf("/metrics: got HTTP %d without %q:\n%s", code, want, body)
	}
}
