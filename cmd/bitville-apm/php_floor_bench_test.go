package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// BenchmarkPHPFloor sets the agent's CPU per request beside a floor: a
// minimal agent doing only what every request of this design must
// (php/tests/bench/floor_agent.php). Three pools of one worker each serve
// the example shop's GET /cheap (no work, no SQL): without an agent, with
// the floor, and with the agent's bootstrap.php, one request at a time; the
// workers run on CPU 1, wrk, nginx and the daemon on CPU 0, and the pools
// take turns for BENCH_ROUNDS rounds of BENCH_DURATION. The worker's CPU
// is read from /proc/<pid>/schedstat (nanoseconds on the CPU):
//
//	make bench-php-floor
//
// The figures go to docs/performance.md ("A lighter request path").
func BenchmarkPHPFloor(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk not found (Debian package wrk; `make deps` installs it): %v", err)
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		b.Fatalf("taskset not found (Debian package util-linux): %v", err)
	}
	rounds := envInt(b, "BENCH_ROUNDS", 8)
	duration := envDuration(b, "BENCH_DURATION", 2*time.Second)
	bin := buildBinary(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	daemon := startBenchDaemon(b, bin)
	pin(b, taskset, "0", daemon.cmd.Process.Pid)
	pinnedWrk := []string{taskset, "-c", "0", wrk}

	type pool struct {
		name, prepend, url string
		worker             int
		cpu                time.Duration
		reqs               float64
	}
	pools := []*pool{
		{name: "no agent"},
		{name: "floor", prepend: filepath.Join(root, "php", "tests", "bench", "floor_agent.php")},
		{name: "agent", prepend: filepath.Join(root, "php", "bootstrap.php")},
	}
	dir := b.TempDir()
	for i, p := range pools {
		env := map[string]string{"BITVILLE_APM_ENABLED": "1", "BITVILLE_APM_PROJECT": "bench", "BITVILLE_APM_SOCKET": daemon.socket}
		fpm, err := stack.StartFPM(ctx, stack.FPMConfig{Dir: filepath.Join(dir, fmt.Sprintf("fpm%d", i)), Pool: fmt.Sprintf("floor%d", i), Children: 1, PrependFile: p.prepend, Env: env,
			WithoutExtensions: callGraphExtensions})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = fpm.Stop() })
		ngx, err := stack.StartNginx(ctx, stack.NginxConfig{Dir: filepath.Join(dir, fmt.Sprintf("nginx%d", i)), Root: filepath.Join(root, "php", "examples", "public"), FastCGISocket: fpm.Socket})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ngx.Stop() })
		p.url = ngx.URL + "/cheap"
		if p.worker, err = onlyChild(fpm.MasterPID()); err != nil {
			b.Fatal(err)
		}
		pin(b, taskset, "1", p.worker)
		pin(b, taskset, "0", ngx.PID())
		_, _ = runWrk(b, pinnedWrk, p.url, 1, time.Second) // warm up: opcache, the persistent socket
	}

	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for j := range pools {
			p := pools[(j+r)%len(pools)]
			before := schedCPU(b, p.worker)
			_, n := runWrk(b, pinnedWrk, p.url, 1, duration)
			p.reqs += n
			p.cpu += schedCPU(b, p.worker) - before
		}
	}
	b.StopTimer()

	perReq := func(p *pool) float64 { return float64(p.cpu.Nanoseconds()) / 1e3 / p.reqs }
	base := perReq(pools[0])
	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds of %s, wrk -t1 -c1 GET /cheap, one php-fpm worker per pool on CPU 1\n", rounds, duration)
	fmt.Fprintf(&out, "%-10s %12s %14s %10s\n", "pool", "requests", "worker µs/req", "over none")
	for _, p := range pools {
		fmt.Fprintf(&out, "%-10s %12.0f %14.1f %10.1f\n", p.name, p.reqs, perReq(p), perReq(p)-base)
		if p != pools[0] {
			b.ReportMetric(perReq(p)-base, strings.ReplaceAll(p.name, " ", "_")+"_µs/req")
		}
	}
	b.Logf("\n%s", out.String())
}

// pin moves every thread of pid to the CPUs of list.
func pin(b *testing.B, taskset, list string, pid int) {
	b.Helper()
	if out, err := exec.Command(taskset, "-apc", list, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		b.Fatalf("taskset %s %d: %v\n%s", list, pid, err, out)
	}
}

// schedCPU is the time pid's main thread has spent on a CPU
// (/proc/<pid>/schedstat, first field, nanoseconds).
func schedCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	s, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "schedstat"))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s))
	if len(f) == 0 {
		b.Fatalf("empty schedstat of %d", pid)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		b.Fatalf("schedstat of %d: %v", pid, err)
	}
	return time.Duration(ns)
}
