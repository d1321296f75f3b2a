package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// phasesAnswer is what php/tests/bench/fpm_phases.php answers.
type phasesAnswer struct {
	Agent     bool             `json:"agent"`
	Preloaded bool             `json:"preloaded"`
	Drawn     bool             `json:"drawn"`
	Sent      int              `json:"sent"`
	NS        map[string]int64 `json:"ns"`
}

// phasesPool is one php-fpm pool of the phase benchmark and what was
// measured in it.
type phasesPool struct {
	name    string
	preload bool
	docroot string // index.php there runs this pool's fpm_phases.php
	fpm     *stack.FPM
	url     string
	answers []phasesAnswer
	plain   []phasesAnswer // ?agent=0
	// worker CPU and requests, with the agent's phases and without
	cpuOn, cpuOff time.Duration
	nOn, nOff     int
}

// phaseRow is one line of the table: a key of the answer's ns, whether it
// exists only on requests drawn for profiling, and whether it comes from the
// requests without the agent (?agent=0).
type phaseRow struct {
	key, label   string
	drawn, plain bool
}

var phaseRows = []phaseRow{
	{"load", "load: require bundle.php, autoloader", false, false},
	{"config", "config: Config::load, socket check", false, false},
	{"record", "record: Runtime::fromGlobals", false, false},
	{"install", "install: handlers, shutdown function", false, false},
	{"start_timer", "start: progress timer", false, false},
	{"start_build", "start: build + encode message", false, false},
	{"start_send", "start: send datagram", false, false},
	{"start_total", "start: whole, up to the profiler", false, false},
	{"profiler_start", "profiler: start (all requests)", false, false},
	{"profiler_create", "profiler: ProfilerFactory::create (drawn)", true, false},
	{"profiler_excimer_start", "profiler: start() (drawn)", true, false},
	{"app", "app: 4 statements, TracedPdo", false, false},
	{"app", "app: 4 statements, PDO (?agent=0)", false, true},
	{"app_connect", "app: connect, TracedPdo", false, false},
	{"app_connect", "app: connect, PDO (?agent=0)", false, true},
	{"end_measure", "end: stop timer/profiler, measure", false, false},
	{"end_profiler_stop", "end: profiler stop() (drawn)", true, false},
	{"end_build", "end: build + encode message", false, false},
	{"end_send", "end: send datagram, rest of finish", false, false},
	{"end_send_socket", "end: the socket send alone", false, false},
	{"end_total", "end: whole finish(false)", false, false},
	{"agent", "agent total (load..end, no app)", false, false},
	{"warm_config", "warm repeat: Config::load", false, false},
	{"warm_record", "warm repeat: Runtime::fromGlobals", false, false},
	{"warm_start_encode", "warm repeat: encode start", false, false},
	{"warm_end_encode", "warm repeat: encode end", false, false},
}

// agentPhases add up to the agent's own work in a request.
var agentPhases = []string{"load", "config", "record", "install", "start_total", "profiler_start", "end_total"}

// BenchmarkPHPPhases measures where the PHP agent's time goes inside a
// php-fpm worker: php/tests/bench/fpm_phases.php, served by real nginx and
// php-fpm (one worker, opcache on, the agent's default settings, a real
// `bitville-apm agent` receiving), does the agent's per-request work phase
// by phase and answers with each phase's wall time. BENCH_REQUESTS
// sequential requests (after a warm-up) give medians and 90th percentiles
// per phase, once with the classes loaded from bundle.php and once with
// opcache.preload = php/preload.php. The worker's CPU per request (/proc)
// is read for the same requests, and for as many requests doing only the
// application's part (?agent=0). BENCH_BEFORE, the php/ directory of
// another tree, adds a pool running that tree's agent and its own
// fpm_phases.php (bundle.php). The pools take turns in blocks of 100
// requests (and 100 without the agent), so that a machine whose speed
// drifts over minutes moves them alike:
//
//	make bench-php-phases   # or:
//	go test -run '^$' -bench PHPPhases -benchtime 1x -v ./cmd/bitville-apm/
//	BENCH_BEFORE=/tmp/old/php make bench-php-phases
func BenchmarkPHPPhases(b *testing.B) {
	requests := envInt(b, "BENCH_REQUESTS", 2000)
	bin := buildBinary(b)
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := b.TempDir()
	shop, err := stack.StartShop(ctx, stack.ShopConfig{Dir: filepath.Join(dir, "shop"), Preload: []string{}, Children: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = shop.Stop() })
	daemon := startBenchDaemon(b, bin)

	// nginx runs Root/index.php for every path: a one-line front
	// controller for a tree's script.
	frontController := func(name, php string) string {
		docroot := filepath.Join(dir, name)
		script := filepath.Join(php, "tests", "bench", "fpm_phases.php")
		if _, err := os.Stat(script); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(docroot, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(docroot, "index.php"), []byte("<?php\nrequire "+strconv.Quote(script)+";\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		return docroot
	}
	docroot := frontController("public", filepath.Join(root, "php"))
	fpmBin, err := stack.FPMBinary()
	if err != nil {
		b.Fatal(err)
	}
	pools := []*phasesPool{{name: "bundle.php", docroot: docroot}, {name: "preload", preload: true, docroot: docroot}}
	if before := os.Getenv("BENCH_BEFORE"); before != "" {
		pools = append(pools, &phasesPool{name: "before", docroot: frontController("before", before)})
	}
	for i, p := range pools {
		c := stack.FPMConfig{Dir: filepath.Join(dir, fmt.Sprintf("fpm%d", i)), Pool: fmt.Sprintf("phases%d", i), Children: 1, Binary: fpmBin,
			WithoutExtensions: callGraphExtensions,
			Env: map[string]string{
				"APP_DB_DSN":           shop.PG.PDODSN(shop.DB),
				"APP_DB_USER":          shop.PG.User,
				"BITVILLE_APM_ENABLED": "1",
				"BITVILLE_APM_PROJECT": "bench",
				"BITVILLE_APM_SOCKET":  daemon.socket,
			}}
		if p.preload {
			// opcache.preload is read when the master starts, before any
			// pool: it goes on php-fpm's command line.
			if c.Binary, err = preloadWrapper(filepath.Join(dir, "php-fpm-preload"), fpmBin, filepath.Join(root, "php", "preload.php")); err != nil {
				b.Fatal(err)
			}
		}
		if p.fpm, err = stack.StartFPM(ctx, c); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = p.fpm.Stop() })
		ngx, err := stack.StartNginx(ctx, stack.NginxConfig{Dir: filepath.Join(dir, fmt.Sprintf("nginx%d", i)), Root: p.docroot, FastCGISocket: p.fpm.Socket})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ngx.Stop() })
		p.url = ngx.URL + "/phases"
	}

	client := &http.Client{Timeout: 10 * time.Second}
	get := func(p *phasesPool, agent bool) phasesAnswer {
		url := p.url
		if !agent {
			url += "?agent=0"
		}
		resp, err := client.Get(url)
		if err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: GET %s: %d %v\n%s", p.name, url, resp.StatusCode, err, body)
		}
		var a phasesAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			b.Fatalf("%s: cannot decode %q: %v", p.name, body, err)
		}
		if agent && (a.Preloaded != p.preload || a.Sent != 2) {
			b.Fatalf("%s: preloaded=%v sent=%d; want preloaded=%v sent=2", p.name, a.Preloaded, a.Sent, p.preload)
		}
		return a
	}

	b.ResetTimer()
	workers := make([]int, len(pools))
	for j, p := range pools {
		if workers[j], err = onlyChild(p.fpm.MasterPID()); err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		for i := 0; i < 100; i++ { // warm up: opcache, PostgreSQL's caches
			get(p, true)
			get(p, false)
		}
	}
	for done := 0; done < requests; {
		n := min(100, requests-done)
		for j, p := range pools {
			c0 := procCPU(b, workers[j])
			for i := 0; i < n; i++ {
				p.answers = append(p.answers, get(p, true))
			}
			c1 := procCPU(b, workers[j])
			for i := 0; i < n; i++ {
				p.plain = append(p.plain, get(p, false))
			}
			c2 := procCPU(b, workers[j])
			p.cpuOn += c1 - c0
			p.cpuOff += c2 - c1
			p.nOn += n
			p.nOff += n
		}
		done += n
	}
	for j, p := range pools {
		if w, err := onlyChild(p.fpm.MasterPID()); err != nil || w != workers[j] {
			b.Fatalf("%s: the worker changed during the run (%d, then %d %v)", p.name, workers[j], w, err)
		}
	}
	b.StopTimer()

	for _, p := range pools {
		for i := range p.answers {
			var sum int64
			for _, k := range agentPhases {
				sum += p.answers[i].NS[k]
			}
			p.answers[i].NS["agent"] = sum
		}
	}
	var out strings.Builder
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&out, "%d sequential requests per pool (1 worker, opcache on, agent defaults); wall time per phase in µs (hrtime); load average %s", requests, load)
	fmt.Fprintf(&out, "%-44s", "phase")
	for _, p := range pools {
		fmt.Fprintf(&out, " %9s %8s", p.name+" p50", "p90")
	}
	out.WriteString("\n")
	for _, r := range phaseRows {
		fmt.Fprintf(&out, "%-44s", r.label)
		for _, p := range pools {
			v := p.phase(r)
			if len(v) == 0 {
				fmt.Fprintf(&out, " %9s %8s", "-", "-")
				continue
			}
			fmt.Fprintf(&out, " %9.1f %8.1f", quantile(v, 0.5)/1e3, quantile(v, 0.9)/1e3)
		}
		out.WriteString("\n")
	}
	for _, p := range pools {
		drawn := 0
		for _, a := range p.answers {
			if a.Drawn {
				drawn++
			}
		}
		on, off := float64(p.cpuOn.Microseconds())/float64(p.nOn), float64(p.cpuOff.Microseconds())/float64(p.nOff)
		fmt.Fprintf(&out, "%s: %d of %d requests drawn for profiling; worker CPU per request (/proc): %.0f µs with the agent, %.0f µs without (?agent=0), difference %.0f µs\n",
			p.name, drawn, len(p.answers), on, off, on-off)
		b.ReportMetric(on-off, strings.ReplaceAll(p.name, ".", "_")+"_agent_cpu_µs/req")
	}
	if reqs := value(daemon.scrape(b), `bitville_php_requests_total{`); reqs < float64(len(pools)*requests) {
		b.Errorf("the daemon counted %.0f requests; want at least %d", reqs, len(pools)*requests)
	}
	b.Logf("\n%s", out.String())
}

// phase is the nanoseconds of one row over the pool's answers.
func (p *phasesPool) phase(r phaseRow) []float64 {
	var v []float64
	answers := p.answers
	if r.plain {
		answers = p.plain
	}
	for _, a := range answers {
		if r.drawn && !a.Drawn {
			continue
		}
		if ns, ok := a.NS[r.key]; ok {
			v = append(v, float64(ns))
		}
	}
	return v
}

// quantile is the q-quantile of v (nearest rank).
func quantile(v []float64, q float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(len(s)-1, i))]
}

// procCPU is a process's own user+system CPU time so far.
func procCPU(b *testing.B, pid int) time.Duration {
	_, self, _, ok := procStat(pid)
	if !ok {
		b.Fatalf("cannot read /proc/%d/stat", pid)
	}
	return self
}

// onlyChild is the single child of pid (a php-fpm master with one worker).
func onlyChild(pid int) (int, error) {
	kids, err := children(pid)
	if err != nil {
		return 0, err
	}
	if len(kids) != 1 {
		return 0, fmt.Errorf("php-fpm master %d has children %v; want one worker", pid, kids)
	}
	return kids[0], nil
}

// children lists the processes whose parent is pid.
func children(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, ok := procStat(c); ok && ppid == pid {
			kids = append(kids, c)
		}
	}
	return kids, nil
}

// preloadWrapper writes an executable at path that runs php-fpm with
// opcache.preload = preload (and opcache.preload_user, which PHP requires
// when the master runs as root).
func preloadWrapper(path, fpm, preload string) (string, error) {
	u, err := user.Current()
	if err != nil {
		return "", fmt.Errorf("cannot write the preload wrapper: %w", err)
	}
	return fpmWrapper(path, fpm, "-d", "opcache.preload="+preload, "-d", "opcache.preload_user="+u.Username)
}

// fpmWrapper writes an executable at path that runs php-fpm with args
// before its own: settings only the master reads (opcache.preload,
// opcache.jit_buffer_size), which a pool's php_admin_value cannot set.
func fpmWrapper(path, fpm string, args ...string) (string, error) {
	sh := "#!/bin/sh\nexec " + shellQuote(fpm)
	for _, a := range args {
		sh += " " + shellQuote(a)
	}
	sh += " \"$@\"\n"
	if err := os.WriteFile(path, []byte(sh), 0o755); err != nil {
		return "", fmt.Errorf("cannot write the php-fpm wrapper: %w", err)
	}
	return path, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
