package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// slowEnd is an end message of a request slow enough to be shipped as a
// raw trace, with correlation id cid.
func slowEnd(i int, cid string) []byte {
	return fmt.Appendf(nil, `{"v":1,"type":"end","id":"r%d","pid":%d,"project":"shop","ts":%d,"cid":%q,"method":"GET","endpoint":"GET /orders/{id}","uri":"/orders/%d","started":%d,"status":200,"wall":2.5,"cpu_user":0.01,"mem_peak":4194304,"sql":[{"q":"SELECT * FROM orders WHERE id = %d","d":2.4,"rows":1}]}`,
		i, 1000+i%500, time.Now().Unix(), cid, i, time.Now().Unix(), i)
}

// eventsAgentArgs are the flags of an agent shipping to Loki at url with a
// spool in dir: every request of slowEnd shipped (no rate limit in the
// way), small batches, and a short breaker probe so the test need not wait
// a minute for the sink to be tried again.
func eventsAgentArgs(url, dir string) []string {
	return []string{
		"--loki.url=" + url,
		"--events.spool-dir=" + dir,
		"--events.batch-wait=200ms",
		"--events.backoff-max=1s",
		"--events.breaker-probe=2s",
		"--events.rate-limit=10000",
		"--events.rate-burst=10000",
		"--no-agent.check-pids",
	}
}

// correlationCounts reads every request event of the receiver and counts
// them by correlation id.
func correlationCounts(t *testing.T, ctx context.Context, vl *stack.VictoriaLogs) map[string]int {
	t.Helper()
	rows, err := vl.Query(ctx, `kind:request`)
	if err != nil {
		t.Fatalf("cannot query VictoriaLogs: %v", err)
	}
	n := map[string]int{}
	for _, r := range rows {
		n[r["correlation_id"]]++
	}
	return n
}

// waitDelivered waits until every id of want is in the receiver and
// returns the counts; it fails the test naming how many are missing.
func waitDelivered(t *testing.T, ctx context.Context, vl *stack.VictoriaLogs, want []string, d time.Duration) map[string]int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := correlationCounts(t, ctx, vl)
		missing := 0
		for _, id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events not delivered within %v", missing, len(want), d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestEventsOutage sends slow requests to the agent at a steady rate while
// its Loki receiver (a real VictoriaLogs) is down for 30 seconds, then back:
// every event arrives, none twice. Then, with the receiver down again, the
// agent is killed with events in its spool and started anew on the same
// spool: those arrive too.
func TestEventsOutage(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	vlDir := filepath.Join(dir, "vl")
	vl, err := stack.StartVictoriaLogs(ctx, stack.VictoriaLogsConfig{Dir: vlDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vl.Stop() })
	port := vl.Port
	spool := filepath.Join(dir, "spool")
	agent := startAgent(t, bin, eventsAgentArgs(vl.PushURL(), spool)...)

	// A steady load: 20 shipped requests a second until stopped.
	var (
		mu   sync.Mutex
		sent []string
		seq  atomic.Int64
	)
	load := func(ctx context.Context, socket, prefix string) {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
		if err != nil {
			t.Errorf("cannot dial the agent socket: %v", err)
			return
		}
		defer c.Close()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			i := int(seq.Add(1))
			cid := fmt.Sprintf("%s-%d", prefix, i)
			if _, err := c.Write(slowEnd(i, cid)); err != nil {
				t.Errorf("cannot send to the agent: %v", err)
				return
			}
			mu.Lock()
			sent = append(sent, cid)
			mu.Unlock()
		}
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { load(loadCtx, agent.socket, "outage") })

	time.Sleep(5 * time.Second)
	if err := vl.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	before := len(sent)
	mu.Unlock()
	time.Sleep(30 * time.Second)
	mu.Lock()
	during := len(sent) - before
	mu.Unlock()
	queued := value(agent.scrape(t), `bitville_events_queued{sink="loki"}`)
	vl, err = stack.StartVictoriaLogs(ctx, stack.VictoriaLogsConfig{Dir: vlDir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	stopLoad()
	wg.Wait()
	mu.Lock()
	outage := append([]string(nil), sent...)
	mu.Unlock()
	got := waitDelivered(t, ctx, vl, outage, 60*time.Second)
	twice := 0
	for _, id := range outage {
		if got[id] > 1 {
			twice++
		}
	}
	out := agent.scrape(t)
	dropped := value(out, `bitville_events_dropped_total`)
	t.Logf("outage: %d events in all, %d sent during the 30 s outage (%v queued at its end), all delivered after, %d twice, %v dropped",
		len(outage), during, queued, twice, dropped)
	if twice > 0 || dropped > 0 {
		t.Errorf("after the outage: %d events delivered twice, %v dropped; want none", twice, dropped)
	}
	if queued < float64(during)/2 {
		t.Errorf("only %v events queued at the end of the outage, %d were sent during it", queued, during)
	}

	// Kill with events spooled, restart on the same spool.
	if err := vl.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	sent = nil
	mu.Unlock()
	for i := 0; i < 200; i++ {
		n := int(seq.Add(1))
		cid := fmt.Sprintf("restart-%d", n)
		agent.send(t, slowEnd(n, cid))
		sent = append(sent, cid)
	}
	waitFor(t, 20*time.Second, func() bool {
		return value(agent.scrape(t), `bitville_events_queued{sink="loki"}`) >= 200
	})
	if err := agent.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-agent.done
	agent = startAgent(t, bin, eventsAgentArgs(fmt.Sprintf("http://127.0.0.1:%d/insert/loki/api/v1/push", port), spool)...)
	vl, err = stack.StartVictoriaLogs(ctx, stack.VictoriaLogsConfig{Dir: vlDir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	got = waitDelivered(t, ctx, vl, sent, 60*time.Second)
	twice = 0
	for _, id := range sent {
		if got[id] > 1 {
			twice++
		}
	}
	t.Logf("restart: %d events spooled when the agent was killed, all delivered by the new agent, %d twice", len(sent), twice)
	stopDaemon(t, agent)
}

// TestEventsBreaker points the agent at a receiver that always fails: after
// five failed pushes no connection is tried until the probe.
func TestEventsBreaker(t *testing.T) {
	bin := buildBinary(t)
	var pushes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pushes.Add(1)
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	agent := startAgent(t, bin,
		"--loki.url="+srv.URL+"/loki/api/v1/push",
		"--events.spool-dir="+t.TempDir(),
		"--events.batch-wait=50ms",
		"--events.backoff-min=10ms",
		"--events.backoff-max=50ms",
		"--events.breaker-probe=4s",
	)
	for i := 0; i < 20; i++ {
		agent.send(t, slowEnd(i, fmt.Sprintf("breaker-%d", i)))
	}
	waitFor(t, 20*time.Second, func() bool { return pushes.Load() >= 5 })
	opened := time.Now()
	waitFor(t, 5*time.Second, func() bool {
		return value(agent.scrape(t), `bitville_events_breaker_open{sink="loki"}`) == 1
	})
	// Before the probe is due: nothing more.
	time.Sleep(2 * time.Second)
	if n := pushes.Load(); n != 5 {
		t.Fatalf("%d pushes within %v of the breaker opening; want exactly the 5 that opened it", n, time.Since(opened).Round(time.Millisecond))
	}
	// Then one probe.
	waitFor(t, 10*time.Second, func() bool { return pushes.Load() == 6 })
	time.Sleep(500 * time.Millisecond)
	if n := pushes.Load(); n != 6 {
		t.Errorf("%d pushes after the probe; want 6 (one probe, which failed and opened the breaker again)", n)
	}
	stopDaemon(t, agent)
}

// checkRawTraces finds, by their correlation ids, the raw traces of the
// slow query and of the request php-fpm killed in the receiver: the first
// with its statement, normalised, and the code that ran it; the second
// abandoned, with the stack it was stuck in.
func checkRawTraces(t *testing.T, ctx context.Context, vl *stack.VictoriaLogs) {
	t.Helper()
	find := func(cid, kind string) map[string]string {
		t.Helper()
		q := fmt.Sprintf(`correlation_id:%q kind:%q`, cid, kind)
		deadline := time.Now().Add(20 * time.Second)
		for {
			rows, err := vl.Query(ctx, q)
			if err != nil {
				t.Fatalf("VictoriaLogs query %s: %v", q, err)
			}
			if len(rows) > 0 {
				return rows[0]
			}
			if time.Now().After(deadline) {
				all, _ := vl.Query(ctx, `*`)
				t.Fatalf("no %s event with correlation id %s in VictoriaLogs; it holds %d events: %v", kind, cid, len(all), all)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	slow := find("e2e-slow-sql", "request")
	t.Logf("the slow query's request event as the receiver returns it: %v", slow)
	var sql []struct {
		Q       string   `json:"q"`
		QueryFP string   `json:"query_fp"`
		D       float64  `json:"d"`
		Site    []string `json:"site"`
	}
	if err := json.Unmarshal([]byte(slow["sql"]), &sql); err != nil {
		t.Fatalf("the request event's sql %q: %v", slow["sql"], err)
	}
	var stmt *struct {
		Q       string   `json:"q"`
		QueryFP string   `json:"query_fp"`
		D       float64  `json:"d"`
		Site    []string `json:"site"`
	}
	for i := range sql {
		if strings.Contains(sql[i].Q, "pg_sleep") {
			stmt = &sql[i]
		}
	}
	switch {
	case stmt == nil:
		t.Errorf("the slow request's statements %v lack the pg_sleep query", sql)
	case stmt.D < 1.4 || stmt.QueryFP != slow["query_fp"] || strings.Contains(stmt.Q, "1.5"):
		t.Errorf("pg_sleep statement %+v: want ≥ 1.4 s, the request's query_fp %s, no literal", *stmt, slow["query_fp"])
	case len(stmt.Site) == 0 || !strings.Contains(stmt.Site[0], "src/Controller/ReportController.php:") || !strings.HasSuffix(stmt.Site[0], `App\Controller\ReportController::slowQuery`):
		t.Errorf("pg_sleep statement's call site %q: want ReportController.php's line in App\\Controller\\ReportController::slowQuery first", stmt.Site)
	}
	if slow["endpoint"] != "GET /slow-sql" || slow["level"] != "warning" || slow["job"] != "bitville-apm-agent" || slow["project"] != "shop" || !strings.Contains(slow["reasons"], "slow") {
		t.Errorf("the slow request's fields and labels: %v", slow)
	}

	stuck := find("e2e-stuck", "abandoned")
	t.Logf("the killed request's abandoned event: %v", stuck)
	if stuck["reason"] != "pid_gone" || stuck["endpoint"] != "GET /stuck" || stuck["level"] != "error" || !strings.Contains(stuck["stack"], `App\\Locks::waitForLock`) {
		t.Errorf("the killed request's event: want reason pid_gone, endpoint GET /stuck, level error and its last stack (in App\\Locks::waitForLock); got %v", stuck)
	}
}
