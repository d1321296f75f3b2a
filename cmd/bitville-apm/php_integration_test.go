package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestPHPEndToEnd runs the example shop of php/examples on real
// PostgreSQL, php-fpm (the PHP agent as auto_prepend_file, slowlog and
// status page on, a short request_terminate_timeout) and nginx, with the
// real agent daemon reading the pool's status page and slowlog. It hits
// every endpoint and the CLI script and checks what the daemon's /metrics
// says about them; then it stops the daemon and checks that the
// application answers exactly the same and logs nothing new.
func TestPHPEndToEnd(t *testing.T) {
	requirePHPExtension(t, "excimer", "php-excimer")
	bin := buildBinary(t)
	dir := t.TempDir()
	agentSocket := filepath.Join(dir, "agent.sock")
	// An explicit, empty agent INI file: the host's /etc/bitville-apm
	// cannot change what this test sees.
	agentINI := filepath.Join(dir, "php-agent.ini")
	if err := os.WriteFile(agentINI, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const terminateTimeout = 3 * time.Second
	shop, err := stack.StartShop(ctx, stack.ShopConfig{
		Dir:   filepath.Join(dir, "shop"),
		Agent: true,
		AgentEnv: map[string]string{
			"BITVILLE_APM_CONFIG":               agentINI,
			"BITVILLE_APM_ENABLED":              "1",
			"BITVILLE_APM_PROJECT":              "shop",
			"BITVILLE_APM_SOCKET":               agentSocket,
			"BITVILLE_APM_PROFILER":             "excimer",
			"BITVILLE_APM_EXCIMER_PERIOD_MS":    "5",
			"BITVILLE_APM_EXCIMER_REQUEST_RATE": "1",
			"BITVILLE_APM_PROGRESS_AFTER_MS":    "500",
			"BITVILLE_APM_PROGRESS_INTERVAL_MS": "500",
		},
		Env:              map[string]string{"APP_SLOW_SQL_SECONDS": "1.5", "APP_PRICING_ROUNDS": "30000"},
		Children:         4,
		SlowlogTimeout:   time.Second,
		TerminateTimeout: terminateTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shop.Stop(); err != nil {
			t.Errorf("cannot stop the stack: %v", err)
		}
	})

	// The raw traces go to a real receiver of Loki's push protocol.
	vl, err := stack.StartVictoriaLogs(ctx, stack.VictoriaLogsConfig{Dir: filepath.Join(dir, "victoria-logs")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vl.Stop() })

	agent := startAgent(t, bin,
		"--agent.socket="+agentSocket,
		"--fpm.status-uri="+shop.FPM.StatusURI(),
		"--fpm.slowlog="+shop.FPM.SlowlogPath,
		"--agent.long-request-threshold=1s",
		"--loki.url="+vl.PushURL(),
		"--events.spool-dir="+filepath.Join(dir, "events"),
		"--events.batch-wait=100ms",
	)
	agent.socket = agentSocket

	fpmLogMark := fileLen(t, shop.FPM.ErrorLog)
	first := hitShop(t, ctx, shop)

	// /metrics: everything the requests above must have produced. The
	// daemon aggregates asynchronously; wait until the last of it is there.
	cpuFn := `App\Pricing::recalculate`
	var m promMetrics
	waitForMetrics(t, agent, 30*time.Second, &m, func(m promMetrics) string {
		switch {
		case m.sum("bitville_php_requests_total", map[string]string{"endpoint": "CLI bin/reindex.php"}) < 1:
			return "the CLI run"
		case m.sum("bitville_php_requests_total", map[string]string{"endpoint": "GET /slow-sql"}) < 1:
			return "the slow query request"
		case m.sum("bitville_php_requests_abandoned_total", map[string]string{"endpoint": "GET /stuck"}) < 1,
			m.sum("bitville_agent_inflight_abandoned_total", map[string]string{"reason": "pid_gone"}) < 1,
			m.sum("bitville_php_requests_in_flight", nil) > 0:
			// The three are updated one after the other: a scrape can see
			// one without the others.
			return "the killed request"
		case m.sum("bitville_fpm_slowlog_frames_total", map[string]string{"pool": "www", "function": "execute"}) < 1,
			m.sum("bitville_fpm_slowlog_frames_total", map[string]string{"pool": "www", "function": "usleep"}) < 1:
			// On a slow machine /report outlives the slowlog timeout
			// too: count the two entries the test needs, not any two.
			return "the slowlog entries of /slow-sql and /stuck"
		}
		return ""
	}, func() string {
		var b strings.Builder
		for _, f := range []string{shop.FPM.PHPErrorLog, shop.CLIErrorLog(), shop.FPM.SlowlogPath} {
			if log, err := os.ReadFile(f); err == nil && len(log) > 0 {
				fmt.Fprintf(&b, "\nPHP logged (%s):\n%s", f, log)
			}
		}
		return b.String()
	})

	// Requests by endpoint: route patterns from Agent::setEndpoint, the
	// collapsed URI where no route matched, CLI scripts by name.
	requests := []struct {
		endpoint, method, status string
		want                     float64
	}{
		{"GET /cheap", "GET", "2xx", 3},
		{"GET /orders/{id}", "GET", "2xx", 3},
		{"GET /orders/{id}", "GET", "4xx", 1},
		{"GET /report", "GET", "2xx", 1},
		{"GET /slow-sql", "GET", "2xx", 1},
		{"GET /nowhere", "GET", "4xx", 1},
		{"CLI bin/reindex.php", "CLI", "ok", 1},
	}
	for _, r := range requests {
		got := m.sum("bitville_php_requests_total", map[string]string{"project": "shop", "endpoint": r.endpoint, "method": r.method, "status": r.status})
		if got != r.want {
			t.Errorf("bitville_php_requests_total{endpoint=%q,method=%q,status=%q}: got %v; want %v", r.endpoint, r.method, r.status, got, r.want)
		}
	}
	if got := m.sum("bitville_php_requests_total", map[string]string{"endpoint": "GET /stuck"}); got != 0 {
		t.Errorf("the killed /stuck request counted as finished %v times; want 0", got)
	}
	if got := m.sum("bitville_agent_messages_total", map[string]string{"result": "invalid"}); got != 0 {
		t.Errorf("the daemon rejected %v messages from the PHP agent; want 0\n%s", got, m.samples("bitville_agent_messages_total", map[string]string{"result": "invalid"}))
	}

	// CPU: the CPU-heavy endpoint used CPU, attributed to its named
	// function by the sampling profiler.
	if got := m.sum("bitville_php_request_cpu_seconds_total", map[string]string{"endpoint": "GET /report"}); got <= 0 {
		t.Errorf("bitville_php_request_cpu_seconds_total{endpoint=\"GET /report\"}: got %v; want > 0", got)
	}
	if got := m.sum("bitville_php_function_self_seconds_total", map[string]string{"project": "shop", "function": cpuFn}); got <= 0 {
		t.Errorf("bitville_php_function_self_seconds_total{function=%q}: got %v; want > 0; functions seen:\n%s", cpuFn, got, m.samples("bitville_php_function_self_seconds_total", nil))
	}

	// SQL: each of the application's statements has a fingerprint with
	// its normalised text, and calls are counted per endpoint.
	sqlChecks := []struct {
		text     string // a piece of the normalised text
		endpoint string
		calls    float64 // 0: only check that there were some
	}{
		{"FROM orders o WHERE o.id", "GET /orders/{id}", 4},            // orders 7, 8, 9 and 99999
		{"FROM customers c WHERE c.id", "GET /orders/{id}", 3},         // not for the missing order
		{"FROM order_items i WHERE i.order_id", "GET /orders/{id}", 3}, // one per order
		{"FROM products p WHERE p.id", "GET /orders/{id}", 12},         // one per item: 3 + 4 + 5
		{"FROM tax_rates WHERE country", "GET /orders/{id}", 3},
		{"UPDATE orders SET view_count", "GET /orders/{id}", 3},
		{"pg_sleep", "GET /slow-sql", 1},
		{"SELECT sku, price_cents FROM products", "GET /report", 1},
		{"INSERT INTO search_terms", "CLI bin/reindex.php", 0}, // past the cap: see below
	}
	for _, c := range sqlChecks {
		fp, query := m.queryFingerprint(c.text)
		if fp == "" {
			t.Errorf("no bitville_sql_query_info with a query containing %q; queries seen:\n%s", c.text, m.samples("bitville_sql_query_info", nil))
			continue
		}
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(fp) {
			t.Errorf("query %q: fingerprint %q is not 16 hex digits", query, fp)
		}
		got := m.sum("bitville_php_sql_calls_total", map[string]string{"project": "shop", "endpoint": c.endpoint, "query_fp": fp})
		if c.calls == 0 && got > 0 {
			continue
		}
		if got != c.calls {
			t.Errorf("bitville_php_sql_calls_total{endpoint=%q} for %q: got %v; want %v", c.endpoint, query, got, c.calls)
		}
		if s := m.sum("bitville_php_sql_seconds_total", map[string]string{"endpoint": c.endpoint, "query_fp": fp}); s <= 0 {
			t.Errorf("bitville_php_sql_seconds_total{endpoint=%q} for %q: got %v; want > 0", c.endpoint, query, s)
		}
	}
	// The CLI script runs 602 statements (DELETE, SELECT, 600 INSERTs;
	// BEGIN and COMMIT may count too): the PHP agent sends the first 500
	// (sql_max_statements) and counts the rest as dropped.
	cliCalls := m.sum("bitville_php_sql_calls_total", map[string]string{"project": "shop", "endpoint": "CLI bin/reindex.php"})
	dropped := m.sum("bitville_agent_php_sql_dropped_total", map[string]string{"project": "shop"})
	if cliCalls != 500 || cliCalls+dropped < 602 || cliCalls+dropped > 604 {
		t.Errorf("CLI statements: got %v sent and %v dropped; want 500 sent and 602 to 604 in all", cliCalls, dropped)
	}
	if fp, _ := m.queryFingerprint("pg_sleep"); fp != "" {
		if s := m.sum("bitville_php_sql_seconds_total", map[string]string{"query_fp": fp}); s < 1.4 {
			t.Errorf("time in the pg_sleep(1.5) query: got %vs; want ≥ 1.4s", s)
		}
	}

	// php-fpm: the pool's status page and its slowlog.
	pool := map[string]string{"pool": "www"}
	if got := m.sum("bitville_fpm_up", pool); got != 1 {
		t.Errorf("bitville_fpm_up: got %v; want 1", got)
	}
	if got := m.sum("bitville_fpm_total_processes", pool); got != 4 {
		t.Errorf("bitville_fpm_total_processes: got %v; want 4 (pm.max_children, static)", got)
	}
	if a, i := m.sum("bitville_fpm_active_processes", pool), m.sum("bitville_fpm_idle_processes", pool); a < 1 || a+i != 4 {
		t.Errorf("bitville_fpm_active_processes %v + idle %v: want ≥ 1 active (the scrape itself) and 4 in all", a, i)
	}
	if got := m.sum("bitville_fpm_accepted_connections_total", pool); got < 10 {
		t.Errorf("bitville_fpm_accepted_connections_total: got %v; want ≥ 10 (the requests above)", got)
	}
	// /slow-sql and /stuck both outlive request_slowlog_timeout (1s).
	if got := m.sum("bitville_fpm_slow_requests_total", pool); got < 2 {
		t.Errorf("bitville_fpm_slow_requests_total: got %v; want ≥ 2", got)
	}
	if got := m.sum("bitville_fpm_slowlog_entries_total", pool); got < 2 {
		t.Errorf("bitville_fpm_slowlog_entries_total: got %v; want ≥ 2", got)
	}
	// The slowlog's innermost frames: PDOStatement::execute waiting for
	// pg_sleep, usleep in the lock wait (php-fpm names functions without
	// their class).
	for _, fn := range []string{"execute", "usleep"} {
		if got := m.sum("bitville_fpm_slowlog_frames_total", map[string]string{"pool": "www", "function": fn}); got < 1 {
			t.Errorf("bitville_fpm_slowlog_frames_total{function=%q}: got %v; want ≥ 1; seen:\n%s", fn, got, m.samples("bitville_fpm_slowlog_frames_total", nil))
		}
	}

	// The request php-fpm killed: abandoned because its worker is gone,
	// with the stack its progress messages reported while it was stuck.
	if got := m.sum("bitville_php_requests_abandoned_total", map[string]string{"project": "shop", "endpoint": "GET /stuck"}); got != 1 {
		t.Errorf("bitville_php_requests_abandoned_total{endpoint=\"GET /stuck\"}: got %v; want 1", got)
	}
	if got := m.sum("bitville_agent_inflight_abandoned_total", map[string]string{"reason": "pid_gone"}); got != 1 {
		t.Errorf("bitville_agent_inflight_abandoned_total{reason=\"pid_gone\"}: got %v; want 1", got)
	}
	if got := m.sum("bitville_php_requests_in_flight", nil); got != 0 {
		t.Errorf("bitville_php_requests_in_flight: got %v; want 0 once everything finished or was abandoned", got)
	}
	checkAbandonedEvent(t, agent, "GET /stuck", `App\Locks::waitForLock`)

	if promtool, err := exec.LookPath("promtool"); err != nil {
		t.Errorf("promtool not found (Debian package prometheus): %v", err)
	} else {
		lint := exec.Command(promtool, "check", "metrics")
		lint.Stdin = strings.NewReader(m.text)
		if out, err := lint.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}

	if t.Failed() {
		t.Logf("the scrape checked above:\n%s", m.text)
	}
	checkRawTraces(t, ctx, vl)

	// With the daemon gone the application must not notice: the same
	// answers, no PHP error, nothing new in php-fpm's log but what the
	// same requests logged before (slow and killed requests).
	if err := agent.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-agent.done:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM; want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop within 10s of SIGTERM")
	}
	fpmLogBetween := fileLen(t, shop.FPM.ErrorLog)
	second := hitShop(t, ctx, shop)
	for i := range first {
		if first[i] != second[i] {
			t.Errorf("%s with the daemon stopped: got %d %q; with it running: %d %q", first[i].what, second[i].code, second[i].body, first[i].code, first[i].body)
		}
	}
	for _, f := range []string{shop.FPM.PHPErrorLog, shop.CLIErrorLog()} {
		if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
			t.Errorf("PHP logged errors (%s):\n%s", f, b)
		}
	}
	fpmLog := readFile(t, shop.FPM.ErrorLog)
	before := normalizeFPMLog(fpmLog[fpmLogMark:fpmLogBetween])
	after := normalizeFPMLog(fpmLog[fpmLogBetween:])
	if !strings.Contains(fpmLog[fpmLogMark:fpmLogBetween], "execution timed out") {
		t.Errorf("php-fpm's log does not show /stuck killed by request_terminate_timeout:\n%s", fpmLog[fpmLogMark:fpmLogBetween])
	}
	for line := range after {
		if !before[line] {
			t.Errorf("php-fpm logged a new kind of line with the daemon stopped: %s", line)
		}
	}
	for _, line := range strings.Split(fpmLog, "\n") {
		if strings.Contains(line, "said into std") {
			t.Errorf("a worker wrote to stdout/stderr: %s", line)
		}
	}
}

// response is one answer of the shop, compared across the two runs.
type response struct {
	what string
	code int
	body string
}

// hitShop sends the same requests in the same order each time and runs
// the CLI script; /stuck runs alongside the others (it takes
// request_terminate_timeout) and is recorded last.
func hitShop(t *testing.T, ctx context.Context, shop *stack.Shop) []response {
	t.Helper()
	var stuck response
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		stuck = httpGet(ctx, shop.URL+"/stuck")
	}()
	var out []response
	for _, path := range []string{"/cheap", "/cheap", "/cheap", "/orders/7", "/orders/8", "/orders/9", "/orders/99999", "/nowhere", "/report", "/slow-sql"} {
		out = append(out, httpGet(ctx, shop.URL+path))
	}
	cli, err := shop.RunCLI(ctx, "bin/reindex.php")
	if err != nil {
		t.Errorf("CLI: %v", err)
	}
	out = append(out, response{what: "php bin/reindex.php", body: string(cli)})
	wg.Wait()
	out = append(out, stuck)
	wantCodes := map[string]int{"/cheap": 200, "/orders/7": 200, "/orders/99999": 404, "/nowhere": 404, "/report": 200, "/slow-sql": 200, "/stuck": 502}
	for _, r := range out {
		if want, ok := wantCodes[strings.TrimPrefix(r.what, "GET ")]; ok && r.code != want {
			t.Errorf("%s: got %d %q; want %d", r.what, r.code, r.body, want)
		}
	}
	return out
}

// httpGet sends GET url with the correlation id "e2e" and the path, its
// slashes made dashes (/slow-sql: e2e-slow-sql).
func httpGet(ctx context.Context, url string) response {
	path := url[strings.Index(url[len("http://"):], "/")+len("http://"):]
	what := "GET " + path
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return response{what: what, body: err.Error()}
	}
	req.Header.Set("X-Correlation-ID", "e2e"+strings.ReplaceAll(path, "/", "-"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{what: what, body: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{what: what, code: resp.StatusCode, body: err.Error()}
	}
	return response{what: what, code: resp.StatusCode, body: string(b)}
}

// promMetrics is a parsed scrape.
type promMetrics struct {
	text     string
	families map[string]*dto.MetricFamily
}

func parseMetrics(text string) (promMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	return promMetrics{text: text, families: fams}, err
}

// waitForMetrics scrapes until missing returns "" (nothing missing) and
// leaves the last scrape in m; it fails the test naming what was missing.
// diag adds what else may explain the failure (e.g. PHP's error log).
func waitForMetrics(t *testing.T, p *agentProcess, d time.Duration, m *promMetrics, missing func(promMetrics) string, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var err error
		*m, err = parseMetrics(p.scrape(t))
		if err != nil {
			t.Fatalf("cannot parse the scrape: %v", err)
		}
		what := missing(*m)
		if what == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics shows no trace of %s within %v; the daemon logged:\n%s%s", what, d, p.logs, diag())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func matches(metric *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range metric.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func sampleValue(metric *dto.Metric) float64 {
	switch {
	case metric.Counter != nil:
		return metric.Counter.GetValue()
	case metric.Gauge != nil:
		return metric.Gauge.GetValue()
	case metric.Untyped != nil:
		return metric.Untyped.GetValue()
	}
	return 0
}

// sum adds the samples of family name whose labels include want.
func (m promMetrics) sum(name string, want map[string]string) float64 {
	var s float64
	if f := m.families[name]; f != nil {
		for _, metric := range f.GetMetric() {
			if matches(metric, want) {
				s += sampleValue(metric)
			}
		}
	}
	return s
}

// samples lists the samples of family name whose labels include want,
// for error messages.
func (m promMetrics) samples(name string, want map[string]string) string {
	var lines []string
	if f := m.families[name]; f != nil {
		for _, metric := range f.GetMetric() {
			if !matches(metric, want) {
				continue
			}
			var labels []string
			for _, l := range metric.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			lines = append(lines, fmt.Sprintf("  %s{%s} %v", name, strings.Join(labels, ","), sampleValue(metric)))
		}
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		return "  (none)"
	}
	return strings.Join(lines, "\n")
}

// queryFingerprint returns the query_fp and text of the one
// bitville_sql_query_info series whose query contains text.
func (m promMetrics) queryFingerprint(text string) (fp, query string) {
	f := m.families["bitville_sql_query_info"]
	if f == nil {
		return "", ""
	}
	for _, metric := range f.GetMetric() {
		var q, id string
		for _, l := range metric.GetLabel() {
			switch l.GetName() {
			case "query":
				q = l.GetValue()
			case "query_fp":
				id = l.GetValue()
			}
		}
		if strings.Contains(q, text) {
			return id, q
		}
	}
	return "", ""
}

// checkAbandonedEvent looks for the abandoned event of endpoint in
// /api/v1/events: reason pid_gone, with a stack that shows frame.
func checkAbandonedEvent(t *testing.T, p *agentProcess, endpoint, frame string) {
	t.Helper()
	resp, err := http.Get(p.base + "/api/v1/events")
	if err != nil {
		t.Errorf("GET /api/v1/events: %v", err)
		return
	}
	defer resp.Body.Close()
	var ev struct {
		Events []struct {
			Kind, Reason string
			Request      struct {
				Endpoint string
				Stack    []string
				Progress int64 `json:"progress_messages"`
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil {
		t.Errorf("cannot decode /api/v1/events: %v", err)
		return
	}
	for _, e := range ev.Events {
		if e.Kind != "abandoned" || e.Request.Endpoint != endpoint {
			continue
		}
		if e.Reason != "pid_gone" {
			t.Errorf("%s abandoned for %q; want pid_gone", endpoint, e.Reason)
		}
		if e.Request.Progress < 1 || !strings.Contains(strings.Join(e.Request.Stack, "\n"), frame) {
			t.Errorf("%s abandoned after %d progress messages with stack %q; want progress with %s on the stack", endpoint, e.Request.Progress, e.Request.Stack, frame)
		}
		return
	}
	t.Errorf("no abandoned event for %s in /api/v1/events: %+v", endpoint, ev.Events)
}

var (
	fpmLogTime   = regexp.MustCompile(`^\[[^\]]*\]\s*`)
	fpmLogNumber = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)
)

// normalizeFPMLog returns the set of a php-fpm log's lines without
// timestamps, pids and durations.
func normalizeFPMLog(s string) map[string]bool {
	set := map[string]bool{}
	for _, line := range strings.Split(s, "\n") {
		line = fpmLogNumber.ReplaceAllString(fpmLogTime.ReplaceAllString(line, ""), "N")
		if line = strings.TrimSpace(line); line != "" {
			set[line] = true
		}
	}
	return set
}

func fileLen(t *testing.T, path string) int { return len(readFile(t, path)) }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// requirePHPExtension fails the test when the PHP CLI lacks ext.
func requirePHPExtension(t *testing.T, ext, pkg string) {
	t.Helper()
	out, err := exec.Command("php", "-m").Output()
	if err != nil {
		t.Fatalf("cannot run php -m (Debian package php8.2-cli): %v", err)
	}
	for _, m := range strings.Fields(string(out)) {
		if m == ext {
			return
		}
	}
	t.Fatalf("the PHP extension %s is not loaded (Debian package %s)", ext, pkg)
}
