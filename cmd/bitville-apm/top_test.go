package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestTopParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1795871786":           time.Unix(1795871786, 0),
		"1795871786.5":         time.Unix(1795871786, 500e6),
		"2026-11-28T13:00:00Z": time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC),
	} {
		got, err := parseTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Errorf("a bad time: %v", err)
	}
}

func TestTopWindowDefaults(t *testing.T) {
	now := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	c := &TopCmd{Baseline: time.Hour, Limit: 5, now: func() time.Time { return now }}
	o, err := c.options()
	if err != nil || !o.To.Equal(now) || !o.From.Equal(now.Add(-15*time.Minute)) {
		t.Errorf("defaults: %v → %v, %v", o.From, o.To, err)
	}
	c.From, c.To = "2026-11-28T12:00:00Z", "2026-11-28T11:00:00Z"
	if _, err := c.options(); err == nil || !strings.Contains(err.Error(), "before it starts") {
		t.Errorf("a reversed window: %v", err)
	}
}

// The command's exit statuses and messages, through the real binary.
func TestTopExitStatus(t *testing.T) {
	bin := buildBinary(t)
	run := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"top"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	}
	if code, out := run("--prometheus.url=http://127.0.0.1:1"); code != 1 || !strings.Contains(out, "cannot reach Prometheus") {
		t.Errorf("unreachable: exit %d: %s", code, out)
	}
	if code, out := run("--prometheus.url=http://127.0.0.1:1", "--from=soon"); code != 1 || !strings.Contains(out, "--from") {
		t.Errorf("a bad --from: exit %d: %s", code, out)
	}
	// A Prometheus with PHP metrics but no pg-exporter: the report, then
	// exit status 3 naming the pg-exporter.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		result := "[]"
		if strings.HasPrefix(q, "count(last_over_time(bitville_php_requests_total") || strings.HasPrefix(q, "count(last_over_time(up") {
			result = `[{"metric":{},"value":[0,"1"]}]`
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
	}))
	defer srv.Close()
	code, out := run("--prometheus.url="+srv.URL, "--format=json")
	if code != 3 || !strings.Contains(out, `"warnings"`) || !strings.Contains(out, "pg-exporter") {
		t.Errorf("no pg-exporter: exit %d: %s", code, out)
	}
	// No data at all in the window.
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	defer empty.Close()
	if code, out := run("--prometheus.url="+empty.URL, "--from=2020-01-01T00:00:00Z", "--to=2020-01-01T00:15:00Z"); code != 1 || !strings.Contains(out, "no samples") {
		t.Errorf("an empty window: exit %d: %s", code, out)
	}
}
