package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// buildBinary builds bitville-apm once per test run.
func buildBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bitville-apm")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cannot build bitville-apm: %v", err)
	}
	return bin
}

// agentProcess is a running `bitville-apm agent`.
type agentProcess struct {
	cmd    *exec.Cmd
	socket string
	base   string // http://host:port
	logs   *bytes.Buffer
	done   chan error
}

func startAgent(t testing.TB, bin string, args ...string) *agentProcess {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "agent.sock")
	// min-queue-length=0: tests leave the host's net.unix.max_dgram_qlen alone.
	all := append([]string{"--log.format=json", "agent", "--agent.socket=" + socket, "--web.listen-address=127.0.0.1:0", "--agent.sweep-interval=100ms", "--agent.min-queue-length=0"}, args...)
	return runAgent(t, exec.Command(bin, all...), socket)
}

// runAgent starts cmd (an agent writing JSON logs to stderr), waits until it
// is ready and stops it when the test ends.
func runAgent(t testing.TB, cmd *exec.Cmd, socket string) *agentProcess {
	t.Helper()
	p := launchDaemon(t, cmd, socket, "http")
	waitReady(t, p)
	return p
}

// waitReady waits up to 10 s until the daemon's /readyz answers 200.
func waitReady(t testing.TB, p *agentProcess) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// launchDaemon starts cmd (an agent or pg-exporter writing JSON logs to
// stderr), waits for its start message and stops it when the test ends.
// base is scheme://ADDR of the HTTP address in that message.
func launchDaemon(t testing.TB, cmd *exec.Cmd, socket, scheme string) *agentProcess {
	t.Helper()
	p := &agentProcess{cmd: cmd, socket: socket, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	if p.cmd.Env == nil {
		p.cmd.Env = os.Environ()
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("cannot start the agent: %v", err)
	}
	addr := make(chan string, 1)
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			p.logs.WriteString(line + "\n")
			mu.Unlock()
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && (rec["msg"] == "agent started" || rec["msg"] == "pg-exporter started" || rec["msg"] == "pushgw started") {
				addr <- fmt.Sprint(rec["web"])
			}
		}
	}()
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case a := <-addr:
		p.base = scheme + "://" + a
	case err := <-p.done:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("agent exited at start: %v\n%s", err, p.logs)
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not start in 20s")
	}
	return p
}

// stopDaemon sends SIGTERM and expects a clean exit.
func stopDaemon(t *testing.T, p *agentProcess) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.logs)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("no exit within 15s of SIGTERM")
	}
}

// startHTTPProcess starts cmd (its output kept for the failure message),
// kills it when the test ends, and waits up to 20 s until url answers 200.
// stop kills it earlier; it may be called more than once.
func startHTTPProcess(t testing.TB, cmd *exec.Cmd, url string) (stop func()) {
	t.Helper()
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start %s: %v", cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop = sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop
			}
		}
		select {
		case err := <-done:
			t.Fatalf("%s exited at start: %v\n%s", cmd.Path, err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer on %s within 20s", cmd.Path, url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *agentProcess) send(t testing.TB, msgs ...[]byte) {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: p.socket, Net: "unixgram"})
	if err != nil {
		t.Fatalf("cannot dial the agent socket: %v", err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for _, m := range msgs {
		if _, err := c.Write(m); err != nil {
			t.Fatalf("cannot send %d bytes: %v", len(m), err)
		}
	}
}

func (p *agentProcess) scrape(t testing.TB) string {
	t.Helper()
	req, _ := http.NewRequest("GET", p.base+"/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("cannot scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: got status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// value returns the sum of samples whose line starts with prefix.
func value(exposition, prefix string) float64 {
	var sum float64
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, prefix) {
			f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err == nil {
				sum += f
			}
		}
	}
	return sum
}

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "protocol", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

// goldenFamilies are the metric families compared with the golden file:
// the contract metrics and the deterministic self metrics.
var goldenFamilies = regexp.MustCompile(`^(# (HELP|TYPE) )?(bitville_php_|bitville_sql_|bitville_agent_messages_total|bitville_agent_unmatched_ends_total|bitville_agent_series[ {]|bitville_agent_series_overflow_total|bitville_agent_inflight_abandoned_total)`)

func TestAgentEndToEnd(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; `make deps` installs it): %v", err)
	}
	bin := buildBinary(t)
	// A stale socket file from a crashed daemon must be replaced.
	dir := t.TempDir()
	stale := filepath.Join(dir, "agent.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // a datagram conn does not unlink its file on close: the file stays, stale

	// The host collector's series depend on the machine: off here, checked
	// on a fixture tree by TestAgentHost and exporters/host.
	p := startAgent(t, bin, "--no-agent.check-pids", "--no-host.enabled", "--agent.socket="+stale)
	p.socket = stale

	valid := [][]byte{readGolden(t, "start.json"), readGolden(t, "progress.json"), readGolden(t, "end.json"), readGolden(t, "end-cli.json")}
	invalid, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "protocol", "invalid", "*.json"))
	// One at a time: the agent's readers may handle a burst out of order,
	// which would make the unmatched-end count depend on scheduling.
	for i, m := range valid {
		p.send(t, m)
		waitFor(t, 10*time.Second, func() bool {
			return value(p.scrape(t), "bitville_agent_messages_total{") == float64(i+1)
		})
	}
	for _, f := range invalid {
		b, _ := os.ReadFile(f)
		p.send(t, b)
	}
	want := float64(len(valid) + len(invalid))
	var out string
	waitFor(t, 10*time.Second, func() bool {
		out = p.scrape(t)
		return value(out, "bitville_agent_messages_total") == want
	})

	var filtered []string
	for _, line := range strings.Split(out, "\n") {
		if goldenFamilies.MatchString(line) {
			filtered = append(filtered, line)
		}
	}
	got := strings.Join(filtered, "\n") + "\n"
	goldenPath := filepath.Join("testdata", "agent-metrics.golden")
	if *update {
		if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantText, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -run TestAgentEndToEnd -update to create it)", err)
	}
	if got != string(wantText) {
		t.Errorf("metrics differ from %s (rerun with -update if the change is intended):\n%s", goldenPath, lineDiff(string(wantText), got))
	}

	// promtool lints the whole exposition, self metrics included.
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, b)
	}

	for _, path := range []string{"/", "/healthz", "/api/v1/inflight", "/api/v1/events"} {
		resp, err := http.Get(p.base + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s: got %v %v; want 200", path, resp, err)
			continue
		}
		resp.Body.Close()
	}

	// SIGTERM stops it cleanly and removes the socket file.
	stopDaemon(t, p)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("socket file still there after stop: %v", err)
	}
}

// TestAgentKilledWorker checks that a request whose worker process dies is
// counted as abandoned: a real process stands in for the PHP worker.
func TestAgentKilledWorker(t *testing.T) {
	bin := buildBinary(t)
	p := startAgent(t, bin)
	worker := exec.Command("sleep", "60")
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	ts := float64(time.Now().UnixNano()) / 1e9
	p.send(t, []byte(fmt.Sprintf(`{"v":1,"type":"start","id":"doomed","pid":%d,"project":"shop","ts":%f,"method":"GET","endpoint":"GET /slow","started":%f}`, worker.Process.Pid, ts, ts)))
	waitFor(t, 5*time.Second, func() bool { return value(p.scrape(t), `bitville_php_requests_in_flight{endpoint="GET /slow"`) == 1 })
	_ = worker.Process.Kill()
	_ = worker.Wait()
	waitFor(t, 5*time.Second, func() bool {
		out := p.scrape(t)
		return value(out, `bitville_php_requests_abandoned_total{endpoint="GET /slow",project="shop"}`) == 1 &&
			value(out, `bitville_agent_inflight_abandoned_total{reason="pid_gone"}`) == 1 &&
			value(out, `bitville_php_requests_in_flight{endpoint="GET /slow"`) == 0
	})
	resp, err := http.Get(p.base + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ev struct {
		Events []struct {
			Kind, Reason string
			Request      struct{ ID string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Events) != 1 || ev.Events[0].Kind != "abandoned" || ev.Events[0].Reason != "pid_gone" || ev.Events[0].Request.ID != "doomed" {
		t.Errorf("got events %+v; want the doomed request abandoned as pid_gone", ev.Events)
	}
}

func TestAgentConfigFile(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	os.WriteFile(cfg, []byte("agent:\n  long-request-threshold: 3s\nlimits:\n  endpoints: 7\n"), 0o644)
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("agent:\n  sokcet: /tmp/x\n"), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--config.file="+bad, "agent", "--agent.socket="+filepath.Join(dir, "a.sock"), "--web.listen-address=127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown configuration keys: agent.sokcet") {
		t.Errorf("got %v, %s; want an error naming agent.sokcet", err, out)
	}
	endMsg := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"v":1,"type":"end","id":"r%d","pid":%d,"project":"shop","ts":1764294512,"method":"GET","endpoint":"GET /e%d","started":1764294512,"wall":0.1,"status":200}`, i, 1000+i, i))
	}
	// The file's limits.endpoints (7) applies: 8 endpoints, 1 overflow.
	p := startAgent(t, bin, "--config.file="+cfg)
	for i := 0; i < 8; i++ {
		p.send(t, endMsg(i))
	}
	waitFor(t, 5*time.Second, func() bool {
		out := p.scrape(t)
		return value(out, "bitville_php_requests_total") == 8 && value(out, `bitville_agent_series_overflow_total{label="endpoint"}`) == 1
	})
	// An environment variable beats the file: 5 endpoints, 3 overflows.
	t.Setenv("BITVILLE_LIMITS_ENDPOINTS", "5")
	p = startAgent(t, bin, "--config.file="+cfg)
	for i := 0; i < 8; i++ {
		p.send(t, endMsg(i))
	}
	waitFor(t, 5*time.Second, func() bool {
		return value(p.scrape(t), `bitville_agent_series_overflow_total{label="endpoint"}`) == 3
	})
	// A flag beats both.
	p = startAgent(t, bin, "--config.file="+cfg, "--limits.endpoints=6")
	for i := 0; i < 8; i++ {
		p.send(t, endMsg(i))
	}
	waitFor(t, 5*time.Second, func() bool {
		return value(p.scrape(t), `bitville_agent_series_overflow_total{label="endpoint"}`) == 2
	})
	// help documents every option with its environment variable.
	out, err = exec.CommandContext(ctx, bin, "agent", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("agent --help: %v\n%s", err, out)
	}
	for _, want := range []string{"--agent.socket", "BITVILLE_AGENT_SOCKET", "--web.listen-address", "--limits.endpoints", "agent.check-pids", "--config.file"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("agent --help does not mention %s", want)
		}
	}
}

// lineDiff shows the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
