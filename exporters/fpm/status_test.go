package fpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/bitville/bitville-apm/internal/fastcgi"
	"github.com/bitville/bitville-apm/internal/stack"
)

func TestParseFPMStatus(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		st, err := parseStatus(readTestdata(t, "fpm-status-running.json"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Pool != "www" || st.ProcessManager != "static" || st.ActiveProcesses != 3 || st.IdleProcesses != 0 ||
			st.TotalProcesses != 3 || st.SlowRequests != 2 || st.AcceptedConn != 7 || st.StartTime.Unix() != 1795839787 {
			t.Errorf("got pool %+v", st)
		}
		if len(st.Workers) != 3 {
			t.Fatalf("got %d workers; want 3", len(st.Workers))
		}
		w := st.Workers[1]
		// php-fpm escapes / and " in JSON; the URI comes back as sent.
		if w.PID != 26787 || !w.Running() || w.RequestSeconds != 1.50115 || w.Method != "GET" ||
			w.URI != `/tmp/gfpm/sleepy.php?s=3&q=a"b\c</x>é` || w.Script != "/tmp/gfpm/sleepy.php" || w.Requests != 2 {
			t.Errorf("got worker %+v", w)
		}
		if st.Workers[0].URI != "/status?json&full" || st.Workers[0].Script != "" || st.Workers[0].User != "" {
			t.Errorf("got status worker %+v; want its URI and \"-\" as empty", st.Workers[0])
		}
	})
	t.Run("idle", func(t *testing.T) {
		st, err := parseStatus(readTestdata(t, "fpm-status-idle.json"))
		if err != nil {
			t.Fatal(err)
		}
		w := st.Workers[0]
		if w.State != "Idle" || w.Running() || w.LastMemory != 2097152 || w.URI != "/tmp/gfpm/includer.php" {
			t.Errorf("got idle worker %+v; want its last request", w)
		}
	})
	t.Run("queue", func(t *testing.T) {
		st, err := parseStatus(readTestdata(t, "fpm-status-queue.json"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Pool != "api" || st.ProcessManager != "dynamic" || st.ListenQueue != 1 || st.MaxListenQueue != 2 ||
			st.ListenQueueLen != 4096 || st.MaxChildrenReached != 1 || st.MaxActiveProcesses != 2 {
			t.Errorf("got pool %+v", st)
		}
	})

	bad := []struct {
		name, in, want string
	}{
		{"empty", "", "cannot parse"},
		{"plain text status page", "pool:                 www\nprocess manager:      static\n", "cannot parse"},
		{"html", "<html><body>File not found.</body></html>", "cannot parse"},
		{"no pool", `{"process manager":"static"}`, "no pool name"},
		{"empty pool", `{"pool":""}`, "no pool name"},
		{"wrong type", `{"pool":"www","active processes":"many"}`, "cannot parse"},
		{"negative counter", `{"pool":"www","accepted conn":-1}`, "cannot parse"},
		{"truncated", `{"pool":"www","processes":[{"pid":1,`, "cannot parse"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseStatus([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

// fakeFPM is a FastCGI server on a unix socket that answers every request
// with the current reply, like a php-fpm status page would.
type fakeFPM struct {
	path     string
	requests atomic.Int64
	mu       sync.Mutex
	status   string // CGI Status header value; "" for none
	body     []byte
	hang     bool // accept and read, never answer
	params   map[string]string
}

func newFakeFPM(t *testing.T, body []byte) *fakeFPM {
	t.Helper()
	f := &fakeFPM{path: filepath.Join(t.TempDir(), "fpm.sock"), body: body}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				f.serve(c, done)
			}()
		}
	}()
	return f
}

func (f *fakeFPM) set(status string, body []byte) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}

func (f *fakeFPM) serve(c net.Conn, done <-chan struct{}) {
	params := map[string]string{}
	var h [8]byte
	for {
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(h[4:]))
		body := make([]byte, n+int(h[6]))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		body = body[:n]
		if h[1] == 4 { // PARAMS
			for len(body) > 1 {
				nl, vl := int(body[0]), int(body[1]) // the status params are short
				if 2+nl+vl > len(body) {
					break
				}
				params[string(body[2:2+nl])] = string(body[2+nl : 2+nl+vl])
				body = body[2+nl+vl:]
			}
		}
		if h[1] == 5 && n == 0 { // end of STDIN
			break
		}
	}
	f.requests.Add(1)
	f.mu.Lock()
	f.params = params
	status, body, hang := f.status, f.body, f.hang
	f.mu.Unlock()
	if hang {
		<-done
		return
	}
	out := "Content-type: application/json\r\n"
	if status != "" {
		out += "Status: " + status + "\r\n"
	}
	stdout := append([]byte(out+"\r\n"), body...)
	var b bytes.Buffer
	for len(stdout) > 0 {
		k := min(len(stdout), 65535)
		b.Write([]byte{1, 6, 0, 1, byte(k >> 8), byte(k), 0, 0})
		b.Write(stdout[:k])
		stdout = stdout[k:]
	}
	b.Write([]byte{1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	_, _ = c.Write(b.Bytes())
}

func TestFPMCollectorCache(t *testing.T) {
	f := newFakeFPM(t, readTestdata(t, "fpm-status-idle.json"))
	clk := &clock{now: t0}
	m, reg, _ := newTestMonitor(t, func(o *Options) {
		o.Config.StatusURIs = []string{"unix://" + f.path + ";/fpm-status"}
		o.Now = clk.Now
	})

	got := series(t, reg, "bitville_fpm_")
	want := map[string]float64{
		`bitville_fpm_up{pool=www}`:                                 1,
		`bitville_fpm_active_processes{pool=www}`:                   1,
		`bitville_fpm_idle_processes{pool=www}`:                     2,
		`bitville_fpm_total_processes{pool=www}`:                    3,
		`bitville_fpm_max_active_processes{pool=www}`:               3,
		`bitville_fpm_listen_queue{pool=www}`:                       0,
		`bitville_fpm_listen_queue_max{pool=www}`:                   0,
		`bitville_fpm_listen_queue_length{pool=www}`:                0,
		`bitville_fpm_max_children_reached_total{pool=www}`:         0,
		`bitville_fpm_slow_requests_total{pool=www}`:                4,
		`bitville_fpm_accepted_connections_total{pool=www}`:         10,
		`bitville_fpm_start_time_seconds{pool=www}`:                 1795839787,
		`bitville_fpm_requests_long_running{pool=www}`:              0,
		`bitville_fpm_status_errors_total{pool=www,reason=connect}`: 0,
		`bitville_fpm_slowlog_entries_total{pool=www}`:              0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: got %v (present %v); want %v", k, g, ok, v)
		}
	}
	if _, ok := got[`bitville_fpm_status_scrape_duration_seconds{pool=www}`]; !ok {
		t.Errorf("no scrape duration in %v", got)
	}
	f.mu.Lock()
	p := f.params
	f.mu.Unlock()
	if p["SCRIPT_NAME"] != "/fpm-status" || p["QUERY_STRING"] != "json&full" || p["REQUEST_METHOD"] != "GET" {
		t.Errorf("status request params %v; want SCRIPT_NAME /fpm-status, QUERY_STRING json&full", p)
	}

	// A second scrape and an API call within the cache TTL reach php-fpm once.
	series(t, reg, "bitville_fpm_")
	m.Pools(context.Background())
	if n := f.requests.Load(); n != 1 {
		t.Errorf("got %d status requests for reads within %v; want 1", n, cacheTTL)
	}
	clk.Add(cacheTTL)
	series(t, reg, "bitville_fpm_")
	if n := f.requests.Load(); n != 2 {
		t.Errorf("got %d status requests after the TTL; want 2", n)
	}
}

func TestFPMCollectorDown(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	hung := newFakeFPM(t, nil)
	hung.mu.Lock()
	hung.hang = true
	hung.mu.Unlock()
	notFound := newFakeFPM(t, []byte("File not found.\n"))
	notFound.set("404 Not Found", []byte("File not found.\n"))
	text := newFakeFPM(t, []byte("pool: www\n"))
	good := newFakeFPM(t, readTestdata(t, "fpm-status-queue.json"))
	uris := []string{"unix://" + missing + ";/status", "unix://" + hung.path, "unix://" + notFound.path, "unix://" + text.path, "unix://" + good.path}
	m, reg, _ := newTestMonitor(t, func(o *Options) {
		o.Config.StatusURIs = uris
		o.Config.StatusTimeout = 300 * time.Millisecond
	})

	done := make(chan map[string]float64, 1)
	go func() { done <- series(t, reg, "bitville_fpm_") }()
	var got map[string]float64
	select {
	case got = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the scrape did not finish: a dead or hung pool must not block it past the timeout")
	}
	reasons := []string{"connect", "timeout", "http_status", "parse"}
	for i, reason := range reasons {
		pool := uris[i]
		if v, ok := got[`bitville_fpm_up{pool=`+pool+`}`]; !ok || v != 0 {
			t.Errorf("%s: got up %v (present %v); want 0", pool, v, ok)
		}
		if v := got[`bitville_fpm_status_errors_total{pool=`+pool+`,reason=`+reason+`}`]; v != 1 {
			t.Errorf("%s: got %v errors with reason %s; want 1", pool, v, reason)
		}
		if _, ok := got[`bitville_fpm_active_processes{pool=`+pool+`}`]; ok {
			t.Errorf("%s: a pool that is down has pool gauges", pool)
		}
	}
	if got[`bitville_fpm_up{pool=api}`] != 1 || got[`bitville_fpm_listen_queue{pool=api}`] != 1 {
		t.Errorf("the reachable pool: got %v", got)
	}
	views := m.Pools(context.Background())
	if len(views) != 5 || views[0].Up || !strings.Contains(views[0].Error, "missing.sock") || !views[4].Up {
		t.Errorf("got views %+v", views)
	}
	if !strings.Contains(views[2].Error, "answered 404") {
		t.Errorf("got error %q for a 404; want it to say so", views[2].Error)
	}
}

func TestFPMDuplicatePoolNames(t *testing.T) {
	one := newFakeFPM(t, readTestdata(t, "fpm-status-idle.json"))
	two := newFakeFPM(t, readTestdata(t, "fpm-status-running.json")) // also pool www
	second := "unix://" + two.path + ";/status"
	_, reg, _ := newTestMonitor(t, func(o *Options) { o.Config.StatusURIs = []string{"unix://" + one.path, second} })
	got := series(t, reg, "bitville_fpm_up")
	if got[`bitville_fpm_up{pool=www}`] != 1 || got[`bitville_fpm_up{pool=www@`+second+`}`] != 1 {
		t.Errorf("got %v; want www and www@%s apart", got, second)
	}
}

func TestFPMLongRunningEvents(t *testing.T) {
	body := readTestdata(t, "fpm-status-running.json")
	f := newFakeFPM(t, body)
	clk := &clock{now: t0}
	_, reg, p := newTestMonitor(t, func(o *Options) {
		o.Config.StatusURIs = []string{"unix://" + f.path}
		o.LongRequest = time.Second
		o.Now = clk.Now
	})
	// The PHP agent reported the request of worker 26788, and one of
	// worker 26787 in another pool (another php-fpm master): not the same
	// request.
	p.start(Request{PID: 26788, Started: t0.Add(-1500 * time.Millisecond), Detail: "req-1"})
	p.start(Request{PID: 26787, Pool: "api", Detail: "req-of-api"})

	got := series(t, reg, "bitville_fpm_requests_long_running")
	if v := got[`bitville_fpm_requests_long_running{pool=www}`]; v != 2 {
		t.Errorf("got %v long-running workers; want the 2 running for 1.5s", v)
	}
	ev := p.Events(EventLongRunning)
	if len(ev) != 2 {
		t.Fatalf("got %d fpm_long_running events; want 2: %+v", len(ev), ev)
	}
	byPID := map[int]Event{}
	for _, e := range ev {
		byPID[e.Worker.PID] = e
	}
	if e := byPID[26787]; e.Request.Detail != nil || e.Request.Pool != "www" || e.Request.URI != `/tmp/gfpm/sleepy.php?s=3&q=a"b\c</x>é` || e.Seconds != 1.50115 || !e.Request.Started.Equal(t0.Add(-1501150*time.Microsecond)) {
		t.Errorf("got event %+v", e)
	}
	if e := byPID[26788]; e.Request.Detail != "req-1" || e.Request.PID != 26788 {
		t.Errorf("got event %+v; want it enriched with the PHP agent's in-flight request", e.Request)
	}

	// Read again: still running, not reported again.
	clk.Add(2 * time.Second)
	series(t, reg, "bitville_fpm_")
	if n := len(p.Events(EventLongRunning)); n != 2 {
		t.Errorf("got %d events after a second read; want still 2", n)
	}
	// Worker 26787 finished and started another long request.
	f.set("", bytes.Replace(body, []byte(`"pid":26787,"state":"Running","start time":1795839787,"start since":9,"requests":2`),
		[]byte(`"pid":26787,"state":"Running","start time":1795839787,"start since":9,"requests":3`), 1))
	clk.Add(2 * time.Second)
	series(t, reg, "bitville_fpm_")
	if ev := p.Events(EventLongRunning); len(ev) != 3 || ev[0].Worker.PID != 26787 || ev[0].Worker.Requests != 3 {
		t.Errorf("got %d events, newest %+v; want a third for 26787's next request", len(ev), ev[0].Worker)
	}
}

// slowScript writes a PHP script that stays in slow_report() for the given
// time. It loops on short sleeps because php-fpm's slowlog tracer stops the
// worker with ptrace, which cuts a single long sleep() short.
func slowScript(t *testing.T, d time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slow.php")
	src := fmt.Sprintf(`<?php
declare(strict_types=1);

function slow_report(float $seconds): string
{
    $end = microtime(true) + $seconds;
    while (microtime(true) < $end) {
        usleep(20000);
    }
    return "done\n";
}

echo slow_report(%f);
`, d.Seconds())
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runScript(ctx context.Context, socket, script, query string) (*fastcgi.Response, error) {
	c := &fastcgi.Client{Network: "unix", Address: socket}
	return c.Do(ctx, map[string]string{
		"REQUEST_METHOD": "GET", "SCRIPT_FILENAME": script, "SCRIPT_NAME": script,
		"REQUEST_URI": script + "?" + query, "QUERY_STRING": query,
	})
}

func TestFPMEndToEnd(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fpm, err := stack.StartFPM(ctx, stack.FPMConfig{Dir: t.TempDir(), Pool: "shop", Children: 2, SlowlogTimeout: time.Second})
	if err != nil {
		t.Fatalf("cannot start php-fpm: %v", err)
	}
	t.Cleanup(func() { _ = fpm.Stop() })

	m, reg, p := newTestMonitor(t, func(o *Options) {
		o.Config.StatusURIs = []string{"unix://" + fpm.Socket + ";" + fpm.StatusPath}
		o.Config.Slowlogs = []string{fpm.SlowlogPath}
		o.LongRequest = time.Second
		o.Config.PollInterval = time.Second
	})
	bg, stopBG := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() { m.Run(bg); close(bgDone) }()
	t.Cleanup(func() { stopBG(); <-bgDone })
	// The follower starts at the end of the slowlog; let it open the file
	// before the slow request is made.
	waitUntil(t, 10*time.Second, func() bool {
		v := m.Slowlogs()
		return len(v) == 1 && v[0].Error == ""
	})

	script := slowScript(t, 8*time.Second)
	reqDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := runScript(ctx, fpm.Socket, script, "id=42")
		if err == nil && (r.Status != 200 || string(r.Body) != "done\n") {
			err = fmt.Errorf("got %d %q", r.Status, r.Body)
		}
		reqDone <- err
	}()

	var got map[string]float64
	waitUntil(t, 30*time.Second, func() bool {
		got = series(t, reg, "bitville_fpm_")
		return got[`bitville_fpm_requests_long_running{pool=shop}`] == 1 &&
			got[`bitville_fpm_slowlog_entries_total{pool=shop}`] == 1
	})
	if got[`bitville_fpm_up{pool=shop}`] != 1 || got[`bitville_fpm_total_processes{pool=shop}`] != 2 || got[`bitville_fpm_slow_requests_total{pool=shop}`] != 1 {
		t.Errorf("got %v", got)
	}

	// The running view, over HTTP.
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/fpm")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Pools    []PoolView    `json:"pools"`
		Slowlogs []SlowlogView `json:"slowlogs"`
	}
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(view.Pools) != 1 || view.Pools[0].Status == nil || len(view.Pools[0].Status.Workers) != 2 {
		t.Fatalf("got /api/v1/fpm %+v", view)
	}
	w := view.Pools[0].Status.Workers[0]
	if !w.Running() || w.URI != script+"?id=42" || w.Script != script || w.RequestSeconds < 1 || view.Pools[0].LongRunning != 1 {
		t.Errorf("got first worker %+v; want the slow request, running for over 1s", w)
	}
	if len(view.Slowlogs) != 1 || view.Slowlogs[0].Entries != 1 || view.Slowlogs[0].Path != fpm.SlowlogPath {
		t.Errorf("got slowlogs %+v", view.Slowlogs)
	}

	// Events: the slow worker once as long running, its slowlog entry once.
	var long, slow []Event
	p.mu.Lock()
	events := slices.Clone(p.events)
	p.mu.Unlock()
	for _, e := range events {
		switch e.Kind {
		case EventLongRunning:
			long = append(long, e)
		case EventSlowlog:
			slow = append(slow, e)
		}
	}
	if len(long) != 1 || long[0].Worker.URI != script+"?id=42" || long[0].Request.Pool != "shop" {
		t.Errorf("got long-running events %+v; want the slow request once", long)
	}
	// The trace stops the worker wherever it is: almost always in usleep,
	// rarely in microtime or between calls in slow_report itself.
	if len(slow) != 1 || slow[0].Slowlog.Pool != "shop" || slow[0].Slowlog.Script != script {
		t.Fatalf("got slowlog events %+v; want one of pool shop for %s", slow, script)
	}
	e := slow[0].Slowlog
	last := e.Frames[len(e.Frames)-1]
	// Each frame gives the line its function was called from.
	if len(e.Frames) > 2 || last.Function != "slow_report" || last.File != script || last.Line != 13 {
		t.Errorf("got frames %+v; want slow_report, called from line 13 of the script, at the bottom", e.Frames)
	}
	if v := got[`bitville_fpm_slowlog_frames_total{function=`+e.TopFunction()+`,pool=shop}`]; v != 1 {
		t.Errorf("got bitville_fpm_slowlog_frames_total %v for top function %s; want 1", v, e.TopFunction())
	}

	// promtool lints the whole exposition.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	if err := <-reqDone; err != nil {
		t.Errorf("the slow request: %v", err)
	}
}

// FuzzParseFPMStatus checks that no body makes the status parser panic.
func FuzzParseFPMStatus(f *testing.F) {
	f.Add(readTestdata(f, "fpm-status-running.json"))
	f.Add(readTestdata(f, "fpm-status-queue.json"))
	f.Add([]byte(`{"pool":"x","processes":[{"pid":-1,"request duration":18446744073709551615}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStatus(b)
		if err == nil && st.Pool == "" {
			t.Fatal("accepted a status without a pool name")
		}
	})
}

func TestFPMReadAbandoned(t *testing.T) {
	f := newFakeFPM(t, nil)
	f.mu.Lock()
	f.hang = true
	f.mu.Unlock()
	m, _, _ := newTestMonitor(t, func(o *Options) {
		o.Config.StatusURIs = []string{"unix://" + f.path}
		o.Config.StatusTimeout = time.Minute
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitUntil(t, 10*time.Second, func() bool { return f.requests.Load() == 1 })
		cancel()
	}()
	views := m.Pools(ctx) // an API client that goes away
	if views[0].Up || !strings.Contains(views[0].Error, "abandoned") {
		t.Errorf("got %+v; want an abandoned read", views[0])
	}
	// (A scrape here would read again and wait for the hung server.)
	for _, reason := range errReasons {
		var d dto.Metric
		if err := m.errors.WithLabelValues("unix://"+f.path, reason).Write(&d); err != nil || d.GetCounter().GetValue() != 0 {
			t.Errorf("got %v errors with reason %s for an abandoned read; want 0", d.GetCounter().GetValue(), reason)
		}
	}
	// Not cached: the next read asks php-fpm again.
	f.mu.Lock()
	f.hang = false
	f.body = readTestdata(t, "fpm-status-idle.json")
	f.mu.Unlock()
	if v := m.Pools(context.Background()); !v[0].Up || f.requests.Load() != 2 {
		t.Errorf("got %+v after %d requests; want a fresh successful read", v[0], f.requests.Load())
	}
}
