package phpagent

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The defaults come from the flags' tags: they must be valid as they are,
// and be what the documentation (docs/agent.md) says.
func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("the flag defaults do not validate: %v", err)
	}
	for name, ok := range map[string]bool{
		"agent.socket":              c.Socket == "/run/bitville-apm/agent.sock",
		"agent.socket-mode":         c.SocketMode == 0o660,
		"agent.receive-buffer":      c.ReceiveBuffer == 8<<20,
		"agent.check-pids":          c.CheckPIDs,
		"agent.read-pause":          c.ReadPause == 20*time.Millisecond,
		"agent.spool-dir":           c.SpoolPath() == "/run/bitville-apm/agent.spool",
		"agent.spool-max-bytes":     c.SpoolMaxBytes == 64<<20,
		"web.listen-address":        c.ListenAddress == ":19100",
		"limits.endpoint-functions": c.Limits.EndpointFunctions == 10000,
		"limits.wall-functions":     c.Limits.WallFunctions == 5000,
		"fpm.poll-interval":         c.FPM.PollInterval == 10*time.Second,
		"metrics.native-histograms": !c.NativeBuckets,
		"events.slow-threshold":     c.Traces.SlowThreshold == time.Second,
		"events.sample-rate":        c.Traces.SampleRate == 0,
		"events.profile-functions":  c.Traces.ProfileFunctions == 300,
	} {
		if !ok {
			t.Errorf("default of --%s is not the documented one: %+v", name, c)
		}
	}
}

// The PHP agent leaves call sites and stacks out of requests faster than its
// slow_threshold_ms, so it defaults to this slow threshold: both sides'
// tests read the value from the same file.
func TestSlowThresholdMatchesThePHPAgents(t *testing.T) {
	var limits struct {
		Traces struct {
			SlowThresholdMS *int64 `json:"slow_threshold_ms"`
		} `json:"traces"`
	}
	readSharedLimits(t, &limits)
	if limits.Traces.SlowThresholdMS == nil {
		t.Fatal("limits.json has no traces.slow_threshold_ms")
	}
	want := time.Duration(*limits.Traces.SlowThresholdMS) * time.Millisecond
	if got := DefaultConfig().Traces.SlowThreshold; got != want {
		t.Errorf("--events.slow-threshold defaults to %v; the PHP agent's slow_threshold_ms to %v", got, want)
	}
}

// readSharedLimits decodes testdata/protocol/limits.json, which the PHP
// agent's tests read too, into v.
func readSharedLimits(t *testing.T, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "protocol", "limits.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func TestValidateTraces(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Traces)
		want   string
	}{
		{"sample rate 1", func(c *Traces) { c.SampleRate = 1 }, ""},
		{"sample rate below 0", func(c *Traces) { c.SampleRate = -0.01 }, "events.sample-rate -0.01 must be between 0 and 1"},
		{"sample rate above 1", func(c *Traces) { c.SampleRate = 1.5 }, "events.sample-rate 1.5 must be between 0 and 1"},
		{"sample rate NaN", func(c *Traces) { c.SampleRate = math.NaN() }, "events.sample-rate NaN must be between 0 and 1"},
		{"slow threshold 0", func(c *Traces) { c.SlowThreshold = 0 }, "events.slow-threshold must be positive"},
		{"no profile functions", func(c *Traces) { c.ProfileFunctions = 0 }, "events.profile-functions must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c.Traces)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
				t.Errorf("got %v; want %q", err, tc.want)
			}
		})
	}
}

func TestFileMode(t *testing.T) {
	var m FileMode
	if err := m.UnmarshalText([]byte("0640")); err != nil || m != 0o640 || m.String() != "0640" {
		t.Errorf("0640: got %v, %v", m, err)
	}
	if err := m.UnmarshalText([]byte("rw-r-----")); err == nil || !strings.Contains(err.Error(), "octal") {
		t.Errorf("rw-r-----: got %v; want an error naming octal", err)
	}
}
