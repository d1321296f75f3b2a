package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// The pages of the overhead benchmark: the realistic one (four statements,
// ~10 ms) and a small one (1 ms of CPU, no SQL).
const (
	quotePage = "/quote/7"
	smallPage = "/work/1"
)

// callGraphExtensions are left out of the PHP benchmarks' php-fpm pools
// unless a setup profiles with them: the agent's default mode needs only
// Excimer, and a loaded tideways_xhprof hooks every function call of the
// application and of the agent (docs/performance.md, "A call-graph
// extension merely loaded").
var callGraphExtensions = []string{"tideways_xhprof"}

// phpSetup is one way of running the example shop's php-fpm pool in the
// overhead benchmark.
type phpSetup struct {
	name      string
	agent     bool              // auto_prepend_file = php/bootstrap.php
	prepend   string            // another auto_prepend_file (BENCH_BEFORE's bootstrap.php)
	callGraph bool              // tideways_xhprof loaded (callGraphExtensions)
	env       map[string]string // BITVILLE_APM_* settings
	page      string            // the path loaded; "" is the realistic page, quotePage
	base      string            // the setup it is compared with; "" is the baseline
	url       string
	fpm       *stack.FPM
	nginx     *stack.Nginx
	rps       []float64
	// CPU used while this setup was under load, and the requests served
	reqs                            float64
	fpmCPU, pgCPU, nginxCPU, daemon time.Duration
}

// BenchmarkPHPOverhead measures what the PHP agent costs a realistic
// endpoint (GET /quote/{id}: four statements on PostgreSQL and about 10 ms
// of work) in requests per second, with wrk on loopback against real nginx
// and php-fpm. Every setup gets its own pool (4 workers) and nginx over the
// same PostgreSQL; the setups take turns for BENCH_ROUNDS rounds of
// BENCH_DURATION each (the order rotating every round), and the medians are
// compared with the baseline (no agent) of the same run. The floor setups
// run php/tests/bench/floor_agent.php instead of the agent. BENCH_BEFORE,
// the php/ directory of another tree, adds that agent in its default mode
// on both pages, so a change is measured against what it changes in one
// run:
//
//	make bench-php          # or:
//	go test -run '^$' -bench PHPOverhead -benchtime 1x ./cmd/bitville-apm/
//	BENCH_BEFORE=/tmp/old/php make bench-php
//
// The figures go to docs/performance.md.
func BenchmarkPHPOverhead(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk not found (Debian package wrk; `make deps` installs it): %v", err)
	}
	rounds := envInt(b, "BENCH_ROUNDS", 5)
	duration := envDuration(b, "BENCH_DURATION", 5*time.Second)
	connections := envInt(b, "BENCH_CONNECTIONS", 8)
	bin := buildBinary(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir := b.TempDir()
	shop, err := stack.StartShop(ctx, stack.ShopConfig{Dir: filepath.Join(dir, "shop"), Preload: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = shop.Stop() })
	daemon := startBenchDaemon(b, bin)

	on := func(extra map[string]string) map[string]string {
		env := map[string]string{
			"BITVILLE_APM_ENABLED": "1",
			"BITVILLE_APM_PROJECT": "bench",
			"BITVILLE_APM_SOCKET":  daemon.socket,
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	period := defaultExcimerPeriodMS(b)
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	floor := filepath.Join(root, "php", "tests", "bench", "floor_agent.php")
	setups := []*phpSetup{
		{name: "baseline"},
		{name: "agent", agent: true, env: on(nil)},
		{name: "daemon-down", agent: true, env: on(map[string]string{"BITVILLE_APM_SOCKET": filepath.Join(dir, "absent.sock")})},
		{name: "excimer-period/10", agent: true, env: on(map[string]string{"BITVILLE_APM_EXCIMER_PERIOD_MS": strconv.FormatFloat(period/10, 'f', -1, 64)})},
		{name: "tideways-every-request", agent: true, callGraph: true, env: on(map[string]string{"BITVILLE_APM_PROFILER": "tideways", "BITVILLE_APM_SAMPLE_RATE": "1"})},
		// The small page, where the agent's own cost shows most: its own
		// baseline, and the agent in its default mode.
		{name: "baseline-1ms", page: smallPage, base: "baseline-1ms"},
		{name: "agent-1ms", agent: true, env: on(nil), page: smallPage, base: "baseline-1ms"},
		// The least an agent of this design does on every request
		// (php/tests/bench/floor_agent.php): what any agent sending a start
		// and an end with a timer armed would cost these pages.
		{name: "floor", agent: true, prepend: floor, env: on(nil)},
		{name: "floor-1ms", agent: true, prepend: floor, env: on(nil), page: smallPage, base: "baseline-1ms"},
	}
	if before := os.Getenv("BENCH_BEFORE"); before != "" {
		prepend := filepath.Join(before, "bootstrap.php")
		if _, err := os.Stat(prepend); err != nil {
			b.Fatalf("BENCH_BEFORE: %v", err)
		}
		setups = append(setups, &phpSetup{name: "before", agent: true, prepend: prepend, env: on(nil)},
			&phpSetup{name: "before-1ms", agent: true, prepend: prepend, env: on(nil), page: smallPage, base: "baseline-1ms"})
	}
	if only := os.Getenv("BENCH_SETUPS"); only != "" {
		keep := strings.Split(only, ",")
		for _, s := range setups {
			if slices.Contains(keep, s.name) && s.base != "" {
				keep = append(keep, s.base)
			}
		}
		setups = slices.DeleteFunc(setups, func(s *phpSetup) bool {
			return s.name != "baseline" && !slices.Contains(keep, s.name)
		})
	}
	for i, s := range setups {
		env := map[string]string{"APP_DB_DSN": shop.PG.PDODSN(shop.DB), "APP_DB_USER": shop.PG.User}
		for k, v := range s.env {
			env[k] = v
		}
		c := stack.FPMConfig{Dir: filepath.Join(dir, fmt.Sprintf("fpm%d", i)), Pool: fmt.Sprintf("bench%d", i), Children: 4, Env: env}
		if s.agent {
			c.PrependFile = filepath.Join(root, "php", "bootstrap.php")
			if s.prepend != "" {
				c.PrependFile = s.prepend
			}
		}
		if !s.callGraph {
			c.WithoutExtensions = callGraphExtensions
		}
		if s.fpm, err = stack.StartFPM(ctx, c); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.fpm.Stop() })
		if s.nginx, err = stack.StartNginx(ctx, stack.NginxConfig{Dir: filepath.Join(dir, fmt.Sprintf("nginx%d", i)),
			Root: filepath.Join(root, "php", "examples", "public"), FastCGISocket: s.fpm.Socket}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.nginx.Stop() })
		if s.page == "" {
			s.page = quotePage
		}
		s.url = s.nginx.URL + s.page
		if resp, err := http.Get(s.url); err != nil || resp.StatusCode != 200 {
			b.Fatalf("%s: GET %s: %v %v", s.name, s.url, resp, err)
		}
		_, _ = runWrk(b, []string{wrk}, s.url, connections, time.Second) // warm up: opcache, connections
	}

	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for j := range setups {
			s := setups[(j+r)%len(setups)]
			fpm0, pg0, ngx0, d0 := treeCPU(s.fpm.MasterPID()), treeCPU(shop.PG.PID()), treeCPU(s.nginx.PID()), treeCPU(daemon.cmd.Process.Pid)
			rps, n := runWrk(b, []string{wrk}, s.url, connections, duration)
			s.fpmCPU += treeCPU(s.fpm.MasterPID()) - fpm0
			s.pgCPU += treeCPU(shop.PG.PID()) - pg0
			s.nginxCPU += treeCPU(s.nginx.PID()) - ngx0
			s.daemon += treeCPU(daemon.cmd.Process.Pid) - d0
			s.rps = append(s.rps, rps)
			s.reqs += n
		}
	}
	b.StopTimer()

	baseOf := map[string]float64{}
	for _, s := range setups {
		baseOf[s.name] = median(s.rps)
	}
	var out strings.Builder
	fmt.Fprintf(&out, "%d rounds of %s, wrk -t1 -c%d, GET %s (and %s for the -1ms setups), 4 php-fpm workers per pool, Excimer default period %g ms\n", rounds, duration, connections, quotePage, smallPage, period)
	fmt.Fprintf(&out, "%-24s %10s %8s   %s\n", "setup", "median/s", "of base", "rounds (req/s)")
	for _, s := range setups {
		m := median(s.rps)
		base := baseOf["baseline"]
		if s.base != "" {
			base = baseOf[s.base]
		}
		fmt.Fprintf(&out, "%-24s %10.1f %7.1f%%   %s\n", s.name, m, 100*m/base, fmtRates(s.rps))
		b.ReportMetric(100*m/base, strings.NewReplacer("/", "_", "-", "_").Replace(s.name)+"_%_of_baseline")
	}
	// Where the CPU went, per request: the setup's php-fpm pool and nginx,
	// PostgreSQL and the daemon while the setup was under load.
	perReq := func(d time.Duration, n float64) float64 { return float64(d.Microseconds()) / n }
	fmt.Fprintf(&out, "CPU per request (µs; /proc, all rounds):\n%-24s %8s %8s %8s %8s %8s\n", "setup", "php-fpm", "postgres", "nginx", "daemon", "total")
	for _, s := range setups {
		fmt.Fprintf(&out, "%-24s %8.0f %8.0f %8.0f %8.0f %8.0f\n", s.name, perReq(s.fpmCPU, s.reqs), perReq(s.pgCPU, s.reqs),
			perReq(s.nginxCPU, s.reqs), perReq(s.daemon, s.reqs), perReq(s.fpmCPU+s.pgCPU+s.nginxCPU+s.daemon, s.reqs))
	}
	// The daemon shares the machine with php-fpm, nginx and PostgreSQL:
	// its CPU per message is part of what the agent setups cost.
	metrics := daemon.scrape(b)
	msgs := value(metrics, `bitville_agent_messages_total{reason="none",result="accepted"`)
	reqs := value(metrics, `bitville_php_requests_total{`)
	if reqs == 0 {
		b.Errorf("the daemon counted no requests: the agent setups did not report")
	} else {
		cpu := value(metrics, "process_cpu_seconds_total ")
		fmt.Fprintf(&out, "daemon: %.0f messages, %.0f requests, %.1f s CPU: %.0f µs per message\n", msgs, reqs, cpu, 1e6*cpu/msgs)
		b.ReportMetric(1e6*cpu/msgs, "daemon_µs/msg")
		// A send that failed is spooled or lost: either changes what the
		// agent setups cost, so the figures say when it happened.
		fmt.Fprintf(&out, "PHP agents' failed sends, as they reported them: %.0f; ends without their start: %.0f\n",
			value(metrics, "bitville_agent_php_send_failures_total{"), value(metrics, "bitville_agent_unmatched_ends_total "))
	}
	b.Logf("\n%s", out.String())
}

var (
	wrkRate  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkCount = regexp.MustCompile(`([0-9]+) requests in`)
)

// startBenchDaemon starts the daemon for the PHP benchmarks as in
// production: with a socket queue of 1024 datagrams (its default when it
// runs as root), not the kernel's 10; the host's setting is put back after.
func startBenchDaemon(b *testing.B, bin string) *agentProcess {
	b.Helper()
	if before, err := os.ReadFile("/proc/sys/net/unix/max_dgram_qlen"); err == nil {
		b.Cleanup(func() { _ = os.WriteFile("/proc/sys/net/unix/max_dgram_qlen", before, 0o644) })
	}
	return startAgent(b, bin, "--agent.min-queue-length=1024")
}

// runWrk loads url for d and returns requests per second and the requests
// completed; non-2xx answers fail the benchmark. wrk is the command that
// runs wrk: its path, or that after a prefix such as taskset's.
func runWrk(b *testing.B, wrk []string, url string, connections int, d time.Duration) (rps, requests float64) {
	b.Helper()
	args := append(wrk[1:len(wrk):len(wrk)], "-t1", fmt.Sprintf("-c%d", connections), fmt.Sprintf("-d%ds", int(d.Seconds())), url)
	out, err := exec.Command(wrk[0], args...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
		b.Fatalf("wrk %s saw errors:\n%s", url, out)
	}
	m, n := wrkRate.FindSubmatch(out), wrkCount.FindSubmatch(out)
	if m == nil || n == nil {
		b.Fatalf("no rate or request count in wrk's output:\n%s", out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	requests, _ = strconv.ParseFloat(string(n[1]), 64)
	return rps, requests
}

// defaultExcimerPeriodMS asks the PHP agent for its default sampling period.
func defaultExcimerPeriodMS(b *testing.B) float64 {
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("php", "-r", `require $argv[1]; echo \Bitville\Apm\Config::DEFAULT_EXCIMER_PERIOD_MS;`,
		filepath.Join(root, "php", "src", "Config.php")).CombinedOutput()
	if err != nil {
		b.Fatalf("cannot read the default Excimer period: %v\n%s", err, out)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("cannot read the default Excimer period from %q: %v", out, err)
	}
	return f
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRates(v []float64) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strings.Join(parts, " ")
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		b.Fatalf("%s=%q: want a duration of at least 1s", name, s)
	}
	return d
}

// benchVariant is an agent pool with settings of its own (BENCH_VARIANTS).
type benchVariant struct {
	name    string
	prepend string // the bootstrap.php it runs: another tree's, or this one's
	env     map[string]string
}

// benchVariants reads BENCH_VARIANTS: "name:KEY=VALUE,KEY=VALUE;name2:...",
// agent pools beside the default one, each with these environment
// variables (BITVILLE_APM_SQLCOMMENTER=0, say); "name@/tmp/x/php:..." runs
// another tree's agent, the others run agent (this tree's bootstrap.php).
func benchVariants(b *testing.B, agent string) []benchVariant {
	b.Helper()
	var out []benchVariant
	for _, v := range strings.Split(os.Getenv("BENCH_VARIANTS"), ";") {
		if v == "" {
			continue
		}
		name, settings, _ := strings.Cut(v, ":")
		name, tree, _ := strings.Cut(name, "@")
		if name == "" {
			b.Fatalf("BENCH_VARIANTS: %q has no name", v)
		}
		bv := benchVariant{name: name, prepend: agent, env: map[string]string{}}
		if tree != "" {
			bv.prepend = filepath.Join(tree, "bootstrap.php")
			if _, err := os.Stat(bv.prepend); err != nil {
				b.Fatalf("BENCH_VARIANTS: %v", err)
			}
		}
		for _, kv := range strings.Split(settings, ",") {
			if kv == "" {
				continue
			}
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				b.Fatalf("BENCH_VARIANTS: %q is not KEY=VALUE", kv)
			}
			bv.env[k] = val
		}
		out = append(out, bv)
	}
	return out
}
