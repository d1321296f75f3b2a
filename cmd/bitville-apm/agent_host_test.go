package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAgentHost runs the agent's host collector on the fixture /proc tree
// of exporters/host (whose own tests check every value) and checks its
// wiring: the flags, the first reading at start, the agent's series
// counters, --no-host.enabled and validation.
func TestAgentHost(t *testing.T) {
	bin := buildBinary(t)
	const fixture = "../../exporters/host/testdata/scan2"
	p := startAgent(t, bin, "--host.proc-path="+fixture, "--host.top-names=3", "--limits.process-names=4")
	var out string
	waitFor(t, 10*time.Second, func() bool {
		out = p.scrape(t)
		return value(out, "bitville_host_scans_total") >= 1
	})
	// The first reading only records CPU; names are ranked by tasks
	// running and uninterruptible: bvindexer 2, then by name bvbackup,
	// kworker (1 each); php-fpm8.2 and postgres (1 each) are not in the
	// top 3 and count as other.
	for _, want := range []string{
		`bitville_host_processes 11`,
		`bitville_host_scan_errors_total{reason="stat"} 1`,
		`bitville_host_tasks{group="other",name="bvindexer",state="uninterruptible"} 1`,
		`bitville_host_tasks{group="other",name="bvbackup",state="running"} 1`,
		`bitville_host_tasks{group="kernel",name="kworker",state="uninterruptible"} 1`,
		`bitville_host_tasks{group="other",name="other",state="running"} 2`,
		`bitville_host_process_cpu_seconds_total{group="other",name="bvindexer"} 0`,
		`bitville_host_pressure_stalled_seconds_total{resource="cpu",scope="some"} 4`,
		`bitville_agent_series_overflow_total{label="process_name"} 0`,
		`bitville_agent_series_expired_total{label="process_name"} 0`,
	} {
		if !strings.Contains(out, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(out, `name="php-fpm8.2"`) {
		t.Errorf("php-fpm8.2 has series of its own; want it counted as other")
	}
	stopDaemon(t, p)

	off := startAgent(t, bin, "--no-host.enabled")
	if out := off.scrape(t); strings.Contains(out, "bitville_host_") || strings.Contains(out, `label="process_name"`) {
		t.Errorf("--no-host.enabled: /metrics has host series")
	}
	stopDaemon(t, off)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "agent", "--agent.socket="+t.TempDir()+"/a.sock", "--web.listen-address=127.0.0.1:0",
		"--host.interval=10ms", "--host.top-names=300").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "host.interval 10ms must be between 1s and 1h") || !strings.Contains(string(b), "host.top-names 300 must be between 1 and limits.process-names 200") {
		t.Errorf("got %v, %s; want errors naming host.interval and host.top-names", err, b)
	}
}
