package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// TestDaemonStall stops the daemon (SIGSTOP, what a load spike that starves
// it of CPU does) while real php-fpm behind real nginx serves a burst, with
// the PHP agent configured by the three documented environment variables
// and the daemon by its default spool settings. When the daemon continues,
// every request is counted, none twice, nothing is left in flight and
// nothing was restarted. Then a longer stall past a small spool bound: the
// oldest spooled messages are dropped and counted, and the rest arrive.
func TestDaemonStall(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	agentSocket := filepath.Join(dir, "agent.sock")
	// The agent's INI file: empty for the first stall, so the defaults
	// apply; the second writes a small spool bound into it.
	agentINI := filepath.Join(dir, "php-agent.ini")
	if err := os.WriteFile(agentINI, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	shop, err := stack.StartShop(ctx, stack.ShopConfig{
		Dir:   filepath.Join(dir, "shop"),
		Agent: true,
		AgentEnv: map[string]string{
			"BITVILLE_APM_CONFIG":  agentINI,
			"BITVILLE_APM_ENABLED": "1",
			"BITVILLE_APM_PROJECT": "shop",
			"BITVILLE_APM_SOCKET":  agentSocket,
		},
		Children: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shop.Stop(); err != nil {
			t.Errorf("cannot stop the stack: %v", err)
		}
	})
	agent := startAgent(t, bin, "--agent.socket="+agentSocket)
	agent.socket = agentSocket
	pid := agent.cmd.Process.Pid
	stopped := false
	cont := func() {
		if stopped {
			if err := agent.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatalf("cannot continue the daemon: %v", err)
			}
			stopped = false
		}
	}
	stop := func() {
		if err := agent.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("cannot stop the daemon: %v", err)
		}
		stopped = true
	}
	t.Cleanup(cont)

	requests := func(m promMetrics, endpoint string) float64 {
		return m.sum("bitville_php_requests_total", map[string]string{"endpoint": endpoint})
	}
	scrape := func() promMetrics {
		m, err := parseMetrics(agent.scrape(t))
		if err != nil {
			t.Fatalf("cannot parse the scrape: %v", err)
		}
		return m
	}
	// settle waits until the count of endpoint reaches want, then a
	// little longer, and returns the last scrape: a count past want
	// would be a request counted twice.
	settle := func(endpoint string, want float64) promMetrics {
		t.Helper()
		var m promMetrics
		waitForMetrics(t, agent, time.Minute, &m, func(m promMetrics) string {
			if got := requests(m, "GET "+endpoint); got < want {
				return fmt.Sprintf("%v of %v requests to %s", got, want, endpoint)
			}
			return ""
		}, func() string { return "" })
		time.Sleep(2 * time.Second) // two more spool passes
		return scrape()
	}

	// Warm up: the workers start, the daemon sees them.
	warm := burst(t, ctx, shop.URL+"/cheap", 4, 40, 0)
	settle("/cheap", float64(warm))

	// The stall, with everything default.
	stop()
	served := burst(t, ctx, shop.URL+"/cheap", 8, 0, 4*time.Second)
	spooled, spooledBytes := spoolFiles(t, filepath.Join(dir, "agent.spool"))
	cont()
	m := settle("/cheap", float64(warm+served))
	counted := requests(m, "GET /cheap") - float64(warm)
	replayed := m.sum("bitville_agent_spool_files_total", map[string]string{"result": "replayed"})
	lost := m.sum("bitville_agent_spool_files_total", map[string]string{"result": "expired"}) +
		m.sum("bitville_agent_spool_files_total", map[string]string{"result": "evicted"}) +
		m.sum("bitville_agent_php_spool_evicted_total", nil)
	t.Logf("stall of 4s: served %d, counted %v, spooled %d (replayed %v), dropped %v", served, counted, spooled, replayed, lost)
	if counted != float64(served) {
		t.Errorf("served %d requests during the stall; counted %v", served, counted)
	}
	if spooled == 0 || replayed < float64(spooled) {
		t.Errorf("spooled %d files, replayed %v: the stall did not exercise the spool", spooled, replayed)
	}
	if lost != 0 {
		t.Errorf("dropped %v spooled messages; want none", lost)
	}
	// Nothing abandoned or left in flight once the superseded requests'
	// grace period (ten spool intervals) is over.
	time.Sleep(11 * time.Second)
	m = scrape()
	for name, want := range map[string]float64{"bitville_php_requests_abandoned_total": 0, "bitville_php_requests_in_flight": 0} {
		if got := m.sum(name, nil); got != want {
			t.Errorf("%s = %v after the stall; want %v\n%s", name, got, want, m.samples(name, nil))
		}
	}
	if requests(m, "GET /cheap") != float64(warm+served) {
		t.Errorf("requests changed after settling: %v; want %d", requests(m, "GET /cheap"), warm+served)
	}
	if agent.cmd.ProcessState != nil || agent.cmd.Process.Pid != pid {
		t.Fatalf("the daemon was restarted or exited")
	}

	// A longer stall past a small bound. The spooled end of a /cheap
	// request is about the same size each time: make room for about 400.
	bound := 400 * spooledBytes / max(spooled, 1)
	if err := os.WriteFile(agentINI, []byte(fmt.Sprintf("spool_max_bytes = %d\n", bound)), 0o644); err != nil {
		t.Fatal(err)
	}
	m = scrape()
	beforeOrders, beforeCheap := requests(m, "GET /orders/{id}"), requests(m, "GET /cheap")
	stop()
	// First many /orders/{id} requests (the oldest: they overflow the
	// bound), then a few /cheap ones (the newest: they fit in a quarter of
	// it, and a full spool keeps at least three quarters).
	oldest := burst(t, ctx, shop.URL+"/orders/7", 8, 600, 0)
	newest := burst(t, ctx, shop.URL+"/cheap", 8, 100, 0)
	cont()
	m = settle("/cheap", beforeCheap+float64(newest))
	orders := requests(m, "GET /orders/{id}") - beforeOrders
	evicted := m.sum("bitville_agent_php_spool_evicted_total", nil)
	t.Logf("stall past a %d-byte bound: served %d+%d, counted %v+%v, evicted by PHP %v", bound, oldest, newest, orders, requests(m, "GET /cheap")-beforeCheap, evicted)
	if got := requests(m, "GET /cheap") - beforeCheap; got != float64(newest) {
		t.Errorf("the newest requests: got %v of %d; want all", got, newest)
	}
	if orders >= float64(oldest) || evicted == 0 {
		t.Errorf("the oldest requests: %v of %d counted, %v evicted; want some dropped past the bound", orders, oldest, evicted)
	}
	if orders+evicted != float64(oldest) {
		t.Errorf("counted %v + evicted %v; want the %d served: each request counted or counted as dropped", orders, evicted, oldest)
	}
}

// burst sends GET url from n clients, either count requests in all or for
// d, and returns how many PHP answered (any status from the application).
func burst(t *testing.T, ctx context.Context, url string, n, count int, d time.Duration) int {
	t.Helper()
	var served, sent atomic.Int64
	var failed atomic.Int64
	deadline := time.Now().Add(d)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if count > 0 && sent.Add(1) > int64(count) {
					return
				}
				if count == 0 && time.Now().After(deadline) {
					return
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 200 || resp.StatusCode == 404 {
					served.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d requests to %s failed", failed.Load(), url)
	}
	return int(served.Load())
}

// spoolFiles counts the spooled messages in dir and their bytes.
func spoolFiles(t *testing.T, dir string) (n, bytes int) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("cannot read the spool: %v", err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".json" {
			if fi, err := e.Info(); err == nil {
				n++
				bytes += int(fi.Size())
			}
		}
	}
	return n, bytes
}
