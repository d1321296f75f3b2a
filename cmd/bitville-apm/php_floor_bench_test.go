package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// BenchmarkPHPFloor sets the agent's CPU per request beside a floor: a
// minimal agent doing only what every request of this design must
// (php/tests/bench/floor_agent.php). Three pools of one worker each serve
// the example shop's BENCH_PAGE (default GET /cheap: no work, no SQL):
// without an agent, with the floor, and with the agent's bootstrap.php, one
// request at a time; the workers run on CPU 1, wrk, nginx, the daemon and
// the shop's PostgreSQL on CPU 0, and the pools take turns for
// BENCH_ROUNDS rounds of BENCH_DURATION. The worker's CPU is read from /proc/<pid>/task/*/schedstat
// (nanoseconds on the CPU, all its threads):
//
//	make bench-php-floor
//	BENCH_PAGE=/quote/7 BENCH_VARIANTS='no-sites:BITVILLE_APM_SQL_SITE_FRAMES=0' make bench-php-floor
//	BENCH_PERF_EVENTS=page-faults,context-switches,raw_syscalls:sys_enter make bench-php-floor
//
// BENCH_VARIANTS adds agent pools with settings of their own
// ("name:KEY=VALUE,KEY=VALUE;name2:..."), BENCH_BEFORE one with another
// tree's bootstrap.php; a page other than /cheap gets the shop's own
// PostgreSQL. BENCH_PERF_EVENTS counts perf's software events in each
// worker beside its CPU (php_perfstat_bench_test.go). BENCH_FPM_FLAGS
// gives every pool's php-fpm command-line flags (settings only the master
// reads, such as the JIT's buffer).
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
	perfEvents := perfEventList(b)
	duration := envDuration(b, "BENCH_DURATION", 2*time.Second)
	bin := buildBinary(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	page := os.Getenv("BENCH_PAGE")
	if page == "" {
		page = "/cheap"
	}
	dir := b.TempDir()
	appEnv := map[string]string{}
	shopPG := 0
	if page != "/cheap" {
		shop, err := stack.StartShop(ctx, stack.ShopConfig{Dir: filepath.Join(dir, "shop"), Preload: []string{}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = shop.Stop() })
		appEnv["APP_DB_DSN"], appEnv["APP_DB_USER"] = shop.PG.PDODSN(shop.DB), shop.PG.User
		shopPG = shop.PG.PID()
	}
	daemon := startBenchDaemon(b, bin)
	pin(b, taskset, "0", daemon.cmd.Process.Pid)
	if shopPG != 0 {
		// PostgreSQL forks a backend per connection (the shop connects per
		// request): on CPU 0 with the rest, so that no backend runs on the
		// worker's CPU.
		pinTree(b, taskset, "0", shopPG)
	}
	pinnedWrk := []string{taskset, "-c", "0", wrk}

	type pool struct {
		name, prepend, url string
		env                map[string]string
		worker             int
		cpu                time.Duration
		reqs               float64
		counts             []float64 // BENCH_PERF_EVENTS, summed over the rounds
		rounds             []float64 // worker µs/req of each round
	}
	agent := filepath.Join(root, "php", "bootstrap.php")
	pools := []*pool{
		{name: "no agent"},
		{name: "floor", prepend: filepath.Join(root, "php", "tests", "bench", "floor_agent.php")},
		{name: "agent", prepend: agent},
	}
	if before := os.Getenv("BENCH_BEFORE"); before != "" {
		pools = append(pools, &pool{name: "before", prepend: filepath.Join(before, "bootstrap.php")})
	}
	for _, v := range benchVariants(b, agent) {
		pools = append(pools, &pool{name: v.name, prepend: v.prepend, env: v.env})
	}
	// BENCH_FPM_FLAGS: php-fpm's own command-line flags for every pool,
	// e.g. "-d opcache.jit_buffer_size=64M -d opcache.jit=tracing".
	fpmBin := ""
	if flags := strings.Fields(os.Getenv("BENCH_FPM_FLAGS")); len(flags) > 0 {
		bin, err := stack.FPMBinary()
		if err != nil {
			b.Fatal(err)
		}
		if fpmBin, err = fpmWrapper(filepath.Join(dir, "php-fpm-flags"), bin, flags...); err != nil {
			b.Fatal(err)
		}
	}
	for i, p := range pools {
		env := map[string]string{"BITVILLE_APM_ENABLED": "1", "BITVILLE_APM_PROJECT": "bench", "BITVILLE_APM_SOCKET": daemon.socket}
		maps.Copy(env, appEnv)
		maps.Copy(env, p.env)
		fpm, err := stack.StartFPM(ctx, stack.FPMConfig{Dir: filepath.Join(dir, fmt.Sprintf("fpm%d", i)), Pool: fmt.Sprintf("floor%d", i), Children: 1, PrependFile: p.prepend, Env: env,
			WithoutExtensions: callGraphExtensions, Binary: fpmBin})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = fpm.Stop() })
		ngx, err := stack.StartNginx(ctx, stack.NginxConfig{Dir: filepath.Join(dir, fmt.Sprintf("nginx%d", i)), Root: filepath.Join(root, "php", "examples", "public"), FastCGISocket: fpm.Socket})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ngx.Stop() })
		p.url = ngx.URL + page
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
			stat := startPerfStat(b, perfEvents, p.worker)
			_, n := runWrk(b, pinnedWrk, p.url, 1, duration)
			used := schedCPU(b, p.worker) - before
			p.cpu += used
			p.rounds = append(p.rounds, float64(used.Nanoseconds())/1e3/n)
			p.reqs += n
			p.counts = addCounts(p.counts, stat.stop(b))
		}
	}
	b.StopTimer()

	perReq := func(p *pool) float64 { return float64(p.cpu.Nanoseconds()) / 1e3 / p.reqs }
	base := perReq(pools[0])
	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds of %s, wrk -t1 -c1 GET %s, one php-fpm worker per pool on CPU 1\n", rounds, duration, page)
	// A round's pools run one after the other within seconds: their
	// difference in that round is spared the drift between rounds (on a
	// 2-core VM a pool's own rounds of GET /quote/7 spread by ±20 %), and
	// its median over the rounds is the steadier figure where the page is
	// slow.
	paired := func(p *pool) float64 {
		d := make([]float64, len(p.rounds))
		for r := range d {
			d[r] = p.rounds[r] - pools[0].rounds[r]
		}
		return median(d)
	}
	fmt.Fprintf(&out, "%-14s %10s %14s %10s %12s %18s\n", "pool", "requests", "worker µs/req", "over none", "paired med.", "rounds min–max")
	for _, p := range pools {
		fmt.Fprintf(&out, "%-14s %10.0f %14.1f %10.1f %12.1f %8.1f–%-8.1f", p.name, p.reqs, perReq(p), perReq(p)-base, paired(p), slices.Min(p.rounds), slices.Max(p.rounds))
		for i, e := range perfEvents {
			fmt.Fprintf(&out, "  %s/req %.2f", e, p.counts[i]/p.reqs)
		}
		out.WriteString("\n")
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

// pinTree pins pid and its children (a postmaster and the processes it
// has forked; those it forks later inherit the affinity).
func pinTree(b *testing.B, taskset, list string, pid int) {
	b.Helper()
	pin(b, taskset, list, pid)
	kids, err := children(pid)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range kids {
		// A child may end before it is pinned (a backend whose
		// connection closed): not an error.
		_ = exec.Command(taskset, "-apc", list, strconv.Itoa(c)).Run()
	}
}

// schedCPU is the time pid's threads have spent on a CPU
// (/proc/<pid>/task/*/schedstat, first field, nanoseconds): Excimer's
// timers may run a thread of their own. A thread that ended between two
// readings takes its time with it; the workers' threads live as long as
// the worker.
func schedCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no threads of %d: %v", pid, err)
	}
	var sum time.Duration
	for _, t := range tasks {
		s, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		f := strings.Fields(string(s))
		if len(f) == 0 {
			b.Fatalf("empty %s", t)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %v", t, err)
		}
		sum += time.Duration(ns)
	}
	return sum
}
