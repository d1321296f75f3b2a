package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// BenchmarkPHPInstructions counts the instructions the php-fpm worker runs
// per request, under valgrind's callgrind: without an agent, with the
// floor (php/tests/bench/floor_agent.php), and with the agent, one worker
// per pool serving the example shop's BENCH_PAGE (default /quote/7:
// four statements through TracedPdo). Unlike CPU time on a shared 2-core
// VM, the count barely moves between runs (±5 % for the agent), so it
// shows changes of a few percent that wrk cannot:
//
//	make bench-php-instructions
//	BENCH_BEFORE=/tmp/old/php make bench-php-instructions   # another tree beside it
//	BENCH_VARIANTS='no-sites:BITVILLE_APM_SQL_SITE_FRAMES=0' make bench-php-instructions
//	BENCH_VARIANTS="flat@$PWD/php/tests/bench/flat:" BENCH_VS=flat make bench-php-instructions  # agent minus that pool, by C function
//
// Each pool runs twice, for 10 and for 10+BENCH_REQUESTS requests (default
// 50); the difference of the two totals, divided by BENCH_REQUESTS, is the
// count per request without php-fpm's start, the first requests' compiling
// and the exit. The agent runs twice: with Excimer drawn for no request
// (excimer_request_rate=0) and for every one (=1); the default's 10 %
// costs a tenth of the difference. The instructions the agent adds are
// listed by C function (callgrind_annotate; PHP's own functions are not
// visible there, the engine's exported ones are). Counted instructions
// leave out the kernel's work (the datagrams, the timer) and cache misses:
// the wall-clock benchmarks give those. The pools' php-fpm loads no
// call-graph extension (callGraphExtensions), but for one without the
// agent that shows what a loaded tideways_xhprof costs the page.
func BenchmarkPHPInstructions(b *testing.B) {
	for _, tool := range []string{"valgrind", "callgrind_annotate"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found (Debian package valgrind; `make deps` installs it): %v", tool, err)
		}
	}
	fpmBinary, err := stack.FPMBinary()
	if err != nil {
		b.Fatal(err)
	}
	requests := envInt(b, "BENCH_REQUESTS", 50)
	page := os.Getenv("BENCH_PAGE")
	if page == "" {
		page = "/quote/7"
	}
	bin := buildBinary(b)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := stack.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	shop, err := stack.StartShop(ctx, stack.ShopConfig{Dir: filepath.Join(dir, "shop"), Preload: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = shop.Stop() })
	daemon := startBenchDaemon(b, bin)

	// php-fpm under callgrind: each worker writes its counts at its exit.
	out := filepath.Join(dir, "callgrind")
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.Fatal(err)
	}
	wrapper := filepath.Join(dir, "php-fpm-callgrind")
	script := fmt.Sprintf("#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/cg.%%p -q %s \"$@\"\n", out, fpmBinary)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}

	type pool struct {
		name, prepend, rate string
		callGraph           bool              // tideways_xhprof loaded (callGraphExtensions)
		env                 map[string]string // BENCH_VARIANTS
	}
	agent := filepath.Join(root, "php", "bootstrap.php")
	pools := []pool{
		{name: "no agent"},
		{name: "no agent, tideways", callGraph: true},
		{name: "floor", prepend: filepath.Join(root, "php", "tests", "bench", "floor_agent.php")},
		{name: "agent", prepend: agent, rate: "0"},
		{name: "agent, profiled", prepend: agent, rate: "1"},
	}
	if before := os.Getenv("BENCH_BEFORE"); before != "" {
		pools = append(pools, pool{name: "before", prepend: filepath.Join(before, "bootstrap.php"), rate: "0"},
			pool{name: "before, profiled", prepend: filepath.Join(before, "bootstrap.php"), rate: "1"})
	}
	for _, v := range benchVariants(b, agent) {
		pools = append(pools, pool{name: v.name, prepend: v.prepend, rate: "0", env: v.env})
	}

	// run serves n requests from a fresh pool and returns the worker's
	// callgrind totals by function (and "" for the whole program).
	run := func(i int, p pool, n int) map[string]float64 {
		env := map[string]string{
			"BITVILLE_APM_ENABLED": "1", "BITVILLE_APM_PROJECT": "bench", "BITVILLE_APM_SOCKET": daemon.socket,
			"APP_DB_DSN": shop.PG.PDODSN(shop.DB), "APP_DB_USER": shop.PG.User,
		}
		if p.rate != "" {
			env["BITVILLE_APM_EXCIMER_REQUEST_RATE"] = p.rate
		}
		maps.Copy(env, p.env)
		name := fmt.Sprintf("%d-%d", i, n)
		c := stack.FPMConfig{Dir: filepath.Join(dir, "fpm"+name), Pool: "cg" + strconv.Itoa(i), Children: 1,
			PrependFile: p.prepend, Env: env, Binary: wrapper}
		if !p.callGraph {
			c.WithoutExtensions = callGraphExtensions
		}
		fpm, err := stack.StartFPM(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		ngx, err := stack.StartNginx(ctx, stack.NginxConfig{Dir: filepath.Join(dir, "nginx"+name), Root: filepath.Join(root, "php", "examples", "public"), FastCGISocket: fpm.Socket})
		if err != nil {
			_ = fpm.Stop()
			b.Fatal(err)
		}
		worker, err := onlyChild(fpm.MasterPID())
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < n; k++ {
			resp, err := http.Get(ngx.URL + page)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("%s %s: %d", p.name, page, resp.StatusCode)
			}
		}
		_ = ngx.Stop()
		_ = fpm.Stop()
		return callgrindTotals(b, filepath.Join(out, "cg."+strconv.Itoa(worker)))
	}

	agentPool := slices.IndexFunc(pools, func(p pool) bool { return p.name == "agent" })
	perRequest := make([]map[string]float64, len(pools))
	b.ResetTimer()
	for i, p := range pools {
		short, long := run(i, p, 10), run(i, p, 10+requests)
		m := map[string]float64{}
		for k, v := range long {
			m[k] = (v - short[k]) / float64(requests)
		}
		for k, v := range short {
			if _, ok := long[k]; !ok {
				m[k] = -v / float64(requests)
			}
		}
		perRequest[i] = m
	}
	b.StopTimer()

	var report strings.Builder
	fmt.Fprintf(&report, "GET %s, one php-fpm worker per pool under callgrind, %d requests counted per pool\n", page, requests)
	fmt.Fprintf(&report, "%-18s %14s %12s\n", "pool", "instr/request", "over none")
	base := perRequest[0][""]
	for i, p := range pools {
		fmt.Fprintf(&report, "%-18s %14.0f %12.0f\n", p.name, perRequest[i][""], perRequest[i][""]-base)
		if i > 0 {
			b.ReportMetric(perRequest[i][""]-base, strings.NewReplacer(" ", "_", ",", "").Replace(p.name)+"_instr/req")
		}
	}
	// Where the agent's instructions go, by C function.
	fns := functionDiff(perRequest[agentPool], perRequest[0])
	sort.Slice(fns, func(i, j int) bool { return fns[i].diff > fns[j].diff })
	listFunctions(&report, "the agent's instructions per request by C function (agent minus no agent, the first 20)", fns, 20)
	// BENCH_VS names another pool (a variant, "before", "floor"): where the
	// agent's instructions differ from it, by C function, both ways.
	if vs := os.Getenv("BENCH_VS"); vs != "" {
		other := slices.IndexFunc(pools, func(p pool) bool { return p.name == vs })
		if other < 0 {
			b.Fatalf("BENCH_VS: no pool %q", vs)
		}
		fns := functionDiff(perRequest[agentPool], perRequest[other])
		sort.Slice(fns, func(i, j int) bool { return math.Abs(fns[i].diff) > math.Abs(fns[j].diff) })
		listFunctions(&report, fmt.Sprintf("agent minus %s by C function (the first 30 by size)", vs), fns, 30)
	}
	b.Logf("\n%s", report.String())
}

// fnDiff is one C function's instructions per request in one pool minus
// another's.
type fnDiff struct {
	name string
	diff float64
}

// functionDiff is a minus b for every function either counted (the
// program total "" left out).
func functionDiff(a, b map[string]float64) []fnDiff {
	var fns []fnDiff
	for k, v := range a {
		if k != "" {
			fns = append(fns, fnDiff{k, v - b[k]})
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok && k != "" {
			fns = append(fns, fnDiff{k, -v})
		}
	}
	return fns
}

// listFunctions writes the first n of fns under title.
func listFunctions(w io.Writer, title string, fns []fnDiff, n int) {
	fmt.Fprintf(w, "%s:\n", title)
	for _, f := range fns[:min(n, len(fns))] {
		fmt.Fprintf(w, "%10.0f  %s\n", f.diff, f.name)
	}
}

var callgrindLine = regexp.MustCompile(`^\s*([0-9,]+) \(\s*[0-9.]+%\)\s+(.+)$`)

// callgrindTotals reads a callgrind output file with callgrind_annotate:
// the instructions of each function, and of the whole program under "".
func callgrindTotals(b *testing.B, file string) map[string]float64 {
	b.Helper()
	var data []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if data, err = exec.Command("callgrind_annotate", "--threshold=100", file).Output(); err == nil && bytes.Contains(data, []byte("PROGRAM TOTALS")) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no callgrind output in %s: %v", file, err)
		}
	}
	totals := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := callgrindLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
		if err != nil {
			continue
		}
		name := strings.TrimSpace(m[2])
		if name == "PROGRAM TOTALS" {
			name = ""
		}
		totals[name] += n
	}
	if _, ok := totals[""]; !ok {
		b.Fatalf("no PROGRAM TOTALS in callgrind_annotate's output of %s", file)
	}
	return totals
}
