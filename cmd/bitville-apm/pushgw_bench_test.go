package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pushwire "github.com/bitville/bitville-apm/internal/push"
	"github.com/bitville/bitville-apm/internal/stack"
)

// The shape of the push benchmark: benchPushInstances instances of
// benchPushSeries series each (a million series in all), pushed by
// benchPushClients concurrent clients.
const (
	benchPushSeries    = 10000
	benchPushInstances = 100
	benchPushClients   = 4
	benchPushVariants  = 4 // bodies with different values, pushed in turn
	benchPushScrapes   = 5
	benchPushToken     = "bench-push-token-0123456789"
	benchPushProject   = "shop"
	benchPushJob       = "bitville-apm-agent" // on both servers: the same label bytes
	// The CPU the servers run on; the benchmark's own goroutines (the
	// load) run on the other one.
	benchServerCPU = "1"
	benchClientCPU = "0"
)

const debianPushgateway = "/usr/bin/prometheus-pushgateway"

// pushTarget is one server of the push benchmark and what was measured
// of it.
type pushTarget struct {
	name       string
	pid        int
	base       string // http://host:port
	metricsURL string
	request    func(instance int, seq uint64, body []byte) *http.Request
	ok         func(resp *http.Response, body []byte) bool // a 2xx that applied the push
	stop       func()

	rssBefore, rssLoaded, rssScraped, hwm int64
	fill                                  time.Duration
	fillErrors                            int
	scrapes                               []float64 // seconds
	scrapeCPU                             time.Duration
	scrapeBytes, scrapeSeries             int
	pushed, errors                        int
	firstErr                              string
	elapsed, cpu                          time.Duration
	latency                               []float64 // seconds
}

// BenchmarkPushgwVsPushgateway runs `bitville-apm pushgw` and Debian's
// prometheus-pushgateway (with its consistency check, the default, and
// without) one after the other, each alone on one pinned core, and loads
// each with the same gzipped agent-like pushes of 10,000 series from
// goroutines on the other core:
//
//  1. fill: 100 instances pushed once each (a million series), timed;
//  2. memory: VmRSS before and after the fill (3 s to settle, no garbage
//     collection forced) and after the scrapes, as bytes per series;
//  3. scrape: /metrics read 5 times uncompressed (median, body size);
//  4. throughput: BENCH_DURATION (default 10s) of pushes rotating over the
//     100 instances, each replacing the instance's last snapshot: pushes/s
//     and samples/s answered 2xx and applied, latency, server CPU.
//
// The payload, the clients and the order of the steps are the same for
// every server.
func BenchmarkPushgwVsPushgateway(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs two CPUs: one for the server, one for the load")
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		b.Skip("taskset not found (util-linux): the servers must be pinned to one core")
	}
	pgwBin := debianPushgateway
	if _, err := os.Stat(pgwBin); err != nil {
		if pgwBin, err = exec.LookPath("prometheus-pushgateway"); err != nil {
			b.Skip("prometheus-pushgateway not found: apt-get install prometheus-pushgateway")
		}
	}
	duration := envDuration(b, "BENCH_DURATION", 10*time.Second)
	bin := buildBinary(b)

	// The load runs on the other core from here on (the servers' taskset
	// overrides it for them).
	self := strconv.Itoa(os.Getpid())
	if out, err := exec.Command(taskset, "-a", "-p", "-c", benchClientCPU, self).CombinedOutput(); err != nil {
		b.Fatalf("cannot pin the benchmark to CPU %s: %v: %s", benchClientCPU, err, out)
	}
	b.Cleanup(func() {
		_ = exec.Command(taskset, "-a", "-p", "-c", fmt.Sprintf("0-%d", runtime.NumCPU()-1), self).Run()
	})

	var text, bodies [][]byte
	for v := range benchPushVariants {
		t := benchPushBody(v)
		text = append(text, t)
		bodies = append(bodies, gzipBytes(b, t))
	}
	if n := countSamples(string(text[0])); n != benchPushSeries {
		b.Fatalf("the payload has %d series; want %d", n, benchPushSeries)
	}

	targets := []func() *pushTarget{
		func() *pushTarget { return startBenchPushgw(b, bin, taskset) },
		func() *pushTarget { return startBenchPushgateway(b, pgwBin, taskset, "pushgateway") },
		func() *pushTarget {
			return startBenchPushgateway(b, pgwBin, taskset, "pushgateway (no check)", "--push.disable-consistency-check")
		},
	}
	var results []*pushTarget
	for _, start := range targets {
		t := start()
		runPushTarget(b, t, bodies, duration)
		t.stop()
		results = append(results, t)
		b.Logf("%s done: fill %.1f s, %.1f pushes/s", t.name, t.fill.Seconds(), float64(t.pushed)/t.elapsed.Seconds())
	}

	var tb strings.Builder
	fmt.Fprintf(&tb, "payload: %d series a push (%d counters, %d histograms of 15 buckets, %d gauges), %.0f KiB of text, %.0f KiB gzipped; %d instances, %d clients on CPU %s; each server alone on CPU %s (GOMAXPROCS=1); throughput over %s\n",
		benchPushSeries, benchPushEndpoints*5, benchPushEndpoints*2, benchPushEndpoints,
		float64(len(text[0]))/1024, float64(len(bodies[0]))/1024, benchPushInstances, benchPushClients, benchClientCPU, benchServerCPU, duration)
	fmt.Fprintf(&tb, "%-24s %8s %9s %11s %7s %7s %6s %6s %7s %8s %8s %9s %8s %9s %8s %9s %7s %9s %9s\n", "server", "fill s", "pushes/s", "samples/s", "p50 ms", "p90 ms",
		"errors", "CPU/s", "ms/push", "RSS0 MiB", "RSS MiB", "B/series", "RSS2 MiB", "B/series2", "peak MiB", "scrape ms", "CPU ms", "body MB", "series")
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	for _, t := range results {
		rate := float64(t.pushed) / t.elapsed.Seconds()
		fmt.Fprintf(&tb, "%-24s %8.2f %9.2f %11.0f %7.0f %7.0f %6d %6.2f %7.1f %8.1f %8.1f %9.0f %8.1f %9.0f %8.1f %9.0f %7.0f %9.1f %9d\n", t.name,
			t.fill.Seconds(), rate, rate*benchPushSeries, 1000*median(t.latency), 1000*percentile(t.latency, 0.9),
			t.errors+t.fillErrors, t.cpu.Seconds()/t.elapsed.Seconds(), cpuPerPush(t), mib(t.rssBefore), mib(t.rssLoaded),
			float64(t.rssLoaded-t.rssBefore)/(benchPushInstances*benchPushSeries), mib(t.rssScraped),
			float64(t.rssScraped-t.rssBefore)/(benchPushInstances*benchPushSeries), mib(t.hwm),
			1000*median(t.scrapes), float64(t.scrapeCPU.Milliseconds()), float64(t.scrapeBytes)/1e6, t.scrapeSeries)
	}
	fmt.Fprintf(&tb, "fill: 100 first pushes (1M series) with %d clients; pushes/s, samples/s: 2xx answers that applied the push, over the throughput window; p50/p90: push latency; CPU/s: the server's CPU seconds per second of the window, ms/push: its CPU per applied push (1000/ms/push: the pushes/s of a whole core)\n", benchPushClients)
	fmt.Fprintf(&tb, "RSS0: VmRSS idle before the fill; RSS, B/series: 3 s after the fill, before any scrape; RSS2, B/series2: after the %d scrapes; peak: VmHWM at the end\n", benchPushScrapes)
	fmt.Fprintf(&tb, "scrape: median wall time of %d uncompressed /metrics reads with 1M pushed series, CPU: the server's CPU per scrape (mean); series: pushed sample lines in the last one\n", benchPushScrapes)
	for _, t := range results {
		if t.firstErr != "" {
			fmt.Fprintf(&tb, "%s: first error: %s\n", t.name, t.firstErr)
		}
	}
	b.Logf("\n%s", tb.String())

	for i, t := range results {
		key := []string{"pushgw", "pushgateway", "pushgateway_nocheck"}[i]
		rate := float64(t.pushed) / t.elapsed.Seconds()
		b.ReportMetric(rate, key+"_pushes/s")
		b.ReportMetric(rate*benchPushSeries, key+"_samples/s")
		b.ReportMetric(float64(t.rssLoaded-t.rssBefore)/(benchPushInstances*benchPushSeries), key+"_B/series")
		b.ReportMetric(cpuPerPush(t), key+"_cpu_ms/push")
		b.ReportMetric(1000*median(t.scrapes), key+"_scrape_ms")
		b.ReportMetric(float64(t.errors+t.fillErrors), key+"_errors")
	}
	for _, t := range results {
		if t.errors+t.fillErrors > 0 {
			b.Errorf("%s: %d pushes failed; first: %s", t.name, t.errors+t.fillErrors, t.firstErr)
		}
		if t.scrapeSeries != benchPushInstances*benchPushSeries {
			b.Errorf("%s: the scrape holds %d pushed series; want %d", t.name, t.scrapeSeries, benchPushInstances*benchPushSeries)
		}
	}
}

// runPushTarget measures t: fill, memory, scrapes, throughput.
func runPushTarget(b *testing.B, t *pushTarget, bodies [][]byte, duration time.Duration) {
	b.Helper()
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: benchPushClients, DisableCompression: true}}
	defer client.CloseIdleConnections()
	var seq [benchPushInstances]atomic.Uint64
	var mu sync.Mutex
	var errs int
	var latency []float64
	push := func(n int) {
		inst := n % benchPushInstances
		req := t.request(inst, seq[inst].Add(1), bodies[n%len(bodies)])
		start := time.Now()
		resp, err := client.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		d := time.Since(start).Seconds()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			errs++
			if t.firstErr == "" {
				t.firstErr = err.Error()
			}
		case !t.ok(resp, body):
			errs++
			if t.firstErr == "" {
				t.firstErr = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
			}
		default:
			latency = append(latency, d)
		}
	}
	// run pushes n = 0, 1, … from benchPushClients goroutines while more
	// says so.
	run := func(more func(n int) bool) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range benchPushClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := int(next.Add(1) - 1); more(n); n = int(next.Add(1) - 1) {
					push(n)
				}
			}()
		}
		wg.Wait()
	}

	time.Sleep(time.Second)
	t.rssBefore, _ = procMemory(t.pid)
	start := time.Now()
	run(func(n int) bool { return n < benchPushInstances })
	t.fill = time.Since(start)
	t.fillErrors, errs, latency = errs, 0, nil
	time.Sleep(3 * time.Second)
	t.rssLoaded, _ = procMemory(t.pid)

	scraper := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DisableCompression: true}}
	defer scraper.CloseIdleConnections()
	// One buffer, grown once, for every scrape: the reading side costs
	// the same for every server and as little as it can.
	var buf bytes.Buffer
	buf.Grow(256 << 20)
	_, cpu0, _, _ := procStat(t.pid)
	for range benchPushScrapes {
		d := scrapeInto(b, scraper, t.metricsURL, &buf)
		t.scrapes = append(t.scrapes, d.Seconds())
	}
	_, cpu1, _, _ := procStat(t.pid)
	t.scrapeCPU = (cpu1 - cpu0) / benchPushScrapes
	t.scrapeBytes = buf.Len()
	t.scrapeSeries = countPrefix(buf.String(), "bitville_php_")
	t.rssScraped, _ = procMemory(t.pid)

	_, cpu0, _, _ = procStat(t.pid)
	start = time.Now()
	deadline := start.Add(duration)
	run(func(n int) bool { return time.Now().Before(deadline) })
	t.elapsed = time.Since(start)
	_, cpu1, _, _ = procStat(t.pid)
	t.cpu = cpu1 - cpu0
	t.pushed, t.errors, t.latency = len(latency), errs, latency
	_, t.hwm = procMemory(t.pid)
}

// startBenchPushgw runs `bitville-apm pushgw` on benchServerCPU with
// GOMAXPROCS=1, its limits raised so that a project holds the million
// series and the samples rate never binds.
func startBenchPushgw(b *testing.B, bin, taskset string) *pushTarget {
	b.Helper()
	dir := b.TempDir()
	tokens := filepath.Join(dir, "tokens.yml")
	if err := os.WriteFile(tokens, []byte("projects:\n  "+benchPushProject+": "+benchPushToken+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(taskset, "-c", benchServerCPU, bin, "--log.format=json", "pushgw",
		"--web.listen-address=127.0.0.1:0",
		"--pushgw.tokens-file="+tokens,
		"--pushgw.max-series-per-project="+strconv.Itoa(benchPushInstances*benchPushSeries+benchPushSeries),
		"--pushgw.samples-rate=1e9", "--pushgw.samples-burst=1000000000",
		"--pushgw.series-ttl=1h", // nothing expires while the benchmark runs
		"--events.spool-dir="+filepath.Join(dir, "events"))
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	p := launchDaemon(b, cmd, "", "http")
	waitReady(b, p)
	var boots [benchPushInstances]string
	for i := range boots {
		boots[i] = fmt.Sprintf("%016x", 0xb000000000000000+uint64(i))
	}
	return &pushTarget{
		name: "bitville-apm pushgw", pid: p.cmd.Process.Pid, base: p.base, metricsURL: p.base + "/metrics",
		request: func(instance int, seq uint64, body []byte) *http.Request {
			req, _ := http.NewRequest(http.MethodPost, p.base+pushwire.MetricsPath, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+benchPushToken)
			req.Header.Set("Content-Type", pushwire.MetricsContentType)
			req.Header.Set("Content-Encoding", "gzip")
			req.Header.Set(pushwire.HeaderJob, benchPushJob)
			req.Header.Set(pushwire.HeaderInstance, benchPushInstance(instance))
			req.Header.Set(pushwire.HeaderBatch, pushwire.BatchID{Boot: boots[instance], Seq: seq}.String())
			req.Header.Set(pushwire.HeaderTime, strconv.FormatInt(time.Now().UnixMilli(), 10))
			req.Header.Set(pushwire.HeaderInterval, "15s")
			return req
		},
		ok: func(resp *http.Response, body []byte) bool {
			var a struct {
				Status string `json:"status"`
				Series int    `json:"series"`
			}
			return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &a) == nil && a.Status == "applied" && a.Series == benchPushSeries
		},
		stop: func() {
			_ = p.cmd.Process.Kill()
			<-p.done
		},
	}
}

// startBenchPushgateway runs Debian's Pushgateway on benchServerCPU with
// GOMAXPROCS=1, in memory only (no persistence file), plus args.
// internal/stack.StartPushgateway is not used: its process must start
// pinned (the Go runtime sizes itself at start) and without a persistence
// file.
func startBenchPushgateway(b *testing.B, bin, taskset, name string, args ...string) *pushTarget {
	b.Helper()
	port, err := stack.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(taskset, append([]string{"-c", benchServerCPU, bin, "--web.listen-address=" + addr, "--persistence.file=", "--log.level=warn"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "GOMAXPROCS=1"}
	base := "http://" + addr
	stop := startHTTPProcess(b, cmd, base+"/-/ready")
	return &pushTarget{
		name: name, pid: cmd.Process.Pid, base: base, metricsURL: base + "/metrics",
		request: func(instance int, _ uint64, body []byte) *http.Request {
			req, _ := http.NewRequest(http.MethodPut, base+"/metrics/job/"+benchPushJob+"/instance/"+benchPushInstance(instance), bytes.NewReader(body))
			req.Header.Set("Content-Type", pushwire.MetricsContentType)
			req.Header.Set("Content-Encoding", "gzip")
			return req
		},
		ok:   func(resp *http.Response, _ []byte) bool { return resp.StatusCode/100 == 2 },
		stop: stop,
	}
}

// cpuPerPush is t's CPU milliseconds per applied push in the throughput
// window.
func cpuPerPush(t *pushTarget) float64 {
	if t.pushed == 0 {
		return 0
	}
	return 1000 * t.cpu.Seconds() / float64(t.pushed)
}

func benchPushInstance(i int) string { return fmt.Sprintf("web-%03d.example.com", i) }

// scrapeInto reads url's text exposition uncompressed into buf and
// returns the time until its last byte.
func scrapeInto(b *testing.B, c *http.Client, url string, buf *bytes.Buffer) time.Duration {
	b.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("Accept-Encoding", "identity")
	buf.Reset()
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		b.Fatalf("cannot scrape %s: %v", url, err)
	}
	_, err = buf.ReadFrom(resp.Body)
	d := time.Since(start)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("scrape %s: status %d, %v", url, resp.StatusCode, err)
	}
	if enc := resp.Header.Get("Content-Encoding"); enc != "" {
		b.Fatalf("scrape %s: Content-Encoding %q; want none", url, enc)
	}
	return d
}

// countPrefix counts the lines of text that start with prefix.
func countPrefix(text, prefix string) int {
	n := 0
	if strings.HasPrefix(text, prefix) {
		n++
	}
	return n + strings.Count(text, "\n"+prefix)
}

func gzipBytes(b *testing.B, p []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(p); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchPushEndpoints is the number of endpoints of benchPushBody: 40
// series each.
const benchPushEndpoints = benchPushSeries / 40

// benchPushBody is an agent-like /metrics page of benchPushSeries series,
// its values set by variant: per endpoint, requests by status (4 counters),
// request and SQL durations (2 classic histograms of 15 buckets: 34 series),
// SQL calls (a counter) and requests in flight (a gauge).
func benchPushBody(variant int) []byte {
	resources := []string{"orders", "carts", "users", "products", "invoices", "payments", "shipments", "reviews", "coupons", "stores"}
	actions := []string{"show", "index", "update", "create", "delete", "items", "history", "export", "search", "status",
		"notes", "tags", "audit", "refund", "preview", "print", "share", "archive", "restore", "lock", "unlock", "copy", "merge", "split", "sync"}
	endpoints := make([]string, benchPushEndpoints)
	for e := range endpoints {
		endpoints[e] = fmt.Sprintf("GET /api/v1/%s/{id}/%s", resources[e%len(resources)], actions[e/len(resources)%len(actions)])
	}
	le := []string{"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5", "7.5", "10", "+Inf"}
	var sb strings.Builder
	sb.WriteString("# HELP bitville_php_requests_total Requests finished, by endpoint and status.\n# TYPE bitville_php_requests_total counter\n")
	for e, ep := range endpoints {
		for s, status := range []string{"200", "302", "404", "500"} {
			fmt.Fprintf(&sb, "bitville_php_requests_total{endpoint=%q,project=%q,status=%q} %d\n", ep, benchPushProject, status, 1000*(variant+1)+e*13+s)
		}
	}
	for _, h := range []string{"request", "sql"} {
		fmt.Fprintf(&sb, "# HELP bitville_php_%s_duration_seconds Wall time, by endpoint.\n# TYPE bitville_php_%s_duration_seconds histogram\n", h, h)
		for e, ep := range endpoints {
			count := 0
			for i, l := range le {
				count += (variant+1)*3 + (e+i)%7
				fmt.Fprintf(&sb, "bitville_php_%s_duration_seconds_bucket{endpoint=%q,project=%q,le=%q} %d\n", h, ep, benchPushProject, l, count)
			}
			fmt.Fprintf(&sb, "bitville_php_%s_duration_seconds_sum{endpoint=%q,project=%q} %g\n", h, ep, benchPushProject, float64(count)*0.137+float64(e)/1000)
			fmt.Fprintf(&sb, "bitville_php_%s_duration_seconds_count{endpoint=%q,project=%q} %d\n", h, ep, benchPushProject, count)
		}
	}
	sb.WriteString("# HELP bitville_php_sql_calls_total SQL statements run, by endpoint.\n# TYPE bitville_php_sql_calls_total counter\n")
	for e, ep := range endpoints {
		fmt.Fprintf(&sb, "bitville_php_sql_calls_total{endpoint=%q,project=%q} %d\n", ep, benchPushProject, 5000*(variant+1)+e)
	}
	sb.WriteString("# HELP bitville_php_requests_in_flight Requests running, by endpoint.\n# TYPE bitville_php_requests_in_flight gauge\n")
	for e, ep := range endpoints {
		fmt.Fprintf(&sb, "bitville_php_requests_in_flight{endpoint=%q,project=%q} %d\n", ep, benchPushProject, (variant+e)%5)
	}
	return []byte(sb.String())
}
