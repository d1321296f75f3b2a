package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
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

// debianPgExporter is where Debian's prometheus-postgres-exporter package
// puts its binary.
const debianPgExporter = "/usr/bin/prometheus-postgres-exporter"

// pgExpSetup is one exporter in the side-by-side benchmark.
type pgExpSetup struct {
	name string
	role string // the PostgreSQL role it logs in as: its statements are told apart by userid
	pid  int    // the exporter's process
	url  string // its /metrics

	dur        []float64     // wall seconds of each scrape
	series     []int         // samples in each scrape
	bytes      int           // exposition size of the last scrape
	cpu        time.Duration // exporter CPU while scraped
	backendCPU time.Duration // its PostgreSQL backends' CPU while scraped
	backends   []int         // those backends' pids
	runCPU     time.Duration // exporter CPU over the whole run (background work included)
	runBackend time.Duration // backends' CPU over the whole run
	// from pg_stat_statements after the run
	statements                  int
	calls, rows, execMS         float64
	bgStatements                int // our background sampler's statements (not in the above)
	bgCalls, bgExecMS, bgMeanMS float64
}

// BenchmarkPgExporterVsPostgresExporter compares `bitville-apm
// pg-exporter` (all collectors on, default flags) with Debian's
// prometheus-postgres-exporter on one throwaway PostgreSQL with
// pg_stat_statements, about 200 statement shapes in it, idle sessions and
// one long-running query. The exporters take turns for BENCH_ROUNDS
// rounds (default 20, the order rotating, ~1 s between scrapes so
// background samplers run); each logs in as a role of its own, so
// pg_stat_statements tells what each one costs the server:
//
//	go test -run '^$' -bench PgExporterVsPostgresExporter -benchtime 1x -v ./cmd/bitville-apm/
//
// The Debian exporter (0.11 in bookworm) has no pg_stat_statements
// collector; a third setup gives it one through --extend.query-path (the
// pg_stat_statements query of the package's example queries.yaml, with
// PostgreSQL 13+ column names). The figures go to docs/performance.md.
func BenchmarkPgExporterVsPostgresExporter(b *testing.B) {
	if _, err := os.Stat(debianPgExporter); err != nil {
		b.Skipf("%s not found (Debian package prometheus-postgres-exporter; `make deps` installs it): %v", debianPgExporter, err)
	}
	rounds := envInt(b, "BENCH_ROUNDS", 20)
	pause := envDuration(b, "BENCH_PAUSE", time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin := buildBinary(b)
	dir := b.TempDir()

	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{Dir: filepath.Join(dir, "pg"), Preload: []string{"pg_stat_statements"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pg.Stop() })
	setups := []*pgExpSetup{
		{name: "bitville-apm pg-exporter", role: "bitville"},
		{name: "postgres_exporter", role: "pgexp"},
		{name: "postgres_exporter+stmts", role: "pgexp_stmt"},
	}
	var setupSQL strings.Builder
	setupSQL.WriteString("CREATE EXTENSION pg_stat_statements;\n")
	for _, s := range setups {
		fmt.Fprintf(&setupSQL, "CREATE ROLE %s LOGIN; GRANT pg_monitor TO %s;\n", s.role, s.role)
	}
	if _, err := pg.Exec(ctx, "postgres", setupSQL.String()); err != nil {
		b.Fatal(err)
	}
	if _, err := pg.Exec(ctx, "postgres", pgBenchWorkload()); err != nil {
		b.Fatal(err)
	}
	startPgSessions(b, pg)

	dsn := func(role string) string {
		return fmt.Sprintf("postgres://%s@%s:%d/postgres?sslmode=disable", role, pg.Host, pg.Port)
	}
	ours := runAgent(b, exec.Command(bin, "--log.format=json", "pg-exporter", "--pg.dsn="+dsn(setups[0].role), "--web.listen-address=127.0.0.1:0"), "")
	setups[0].pid, setups[0].url = ours.cmd.Process.Pid, ours.base+"/metrics"
	queries := filepath.Join(dir, "queries.yaml")
	if err := os.WriteFile(queries, []byte(debianStatementsQuery), 0o644); err != nil {
		b.Fatal(err)
	}
	setups[1].pid, setups[1].url = startDebianPgExporter(b, dsn(setups[1].role))
	setups[2].pid, setups[2].url = startDebianPgExporter(b, dsn(setups[2].role), "--extend.query-path="+queries)

	// Warm up: connections open, our query-text cache filled.
	for i := 0; i < 3; i++ {
		for _, s := range setups {
			body, _ := scrapeTimed(b, s.url)
			if i == 2 {
				checkPgExporterUp(b, s, body)
			}
		}
	}
	// Forget the exporters' own statements so far; the workload's stay.
	if _, err := pg.Exec(ctx, "postgres", "SELECT pg_stat_statements_reset(oid) FROM pg_roles WHERE rolname IN ('bitville', 'pgexp', 'pgexp_stmt')"); err != nil {
		b.Fatal(err)
	}
	for _, s := range setups {
		s.backends = roleBackends(b, ctx, pg, s.role)
		s.runCPU, s.runBackend = treeCPU(s.pid), pidsCPU(s.backends)
	}
	pg0 := treeCPU(pg.PID())
	start := time.Now()

	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for j := range setups {
			s := setups[(j+r)%len(setups)]
			c0, bc0 := treeCPU(s.pid), pidsCPU(s.backends)
			body, d := scrapeTimed(b, s.url)
			s.cpu += treeCPU(s.pid) - c0
			s.backendCPU += pidsCPU(s.backends) - bc0
			s.dur = append(s.dur, d.Seconds())
			s.series = append(s.series, countSamples(body))
			s.bytes = len(body)
			time.Sleep(pause)
		}
	}
	b.StopTimer()
	wall := time.Since(start)
	pgCPU := treeCPU(pg.PID()) - pg0
	for _, s := range setups {
		s.runCPU, s.runBackend = treeCPU(s.pid)-s.runCPU, pidsCPU(s.backends)-s.runBackend
		if now := roleBackends(b, ctx, pg, s.role); !slices.Equal(now, s.backends) {
			b.Logf("%s: backends changed during the run (%v → %v): its server CPU is incomplete", s.name, s.backends, now)
		}
	}

	// What each role ran, from pg_stat_statements.
	out, err := pg.Exec(ctx, "postgres", `SELECT r.rolname, s.calls, s.rows, s.total_exec_time, s.mean_exec_time,
		regexp_replace(s.query, '\s+', ' ', 'g')
		FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
		WHERE r.rolname IN ('bitville', 'pgexp', 'pgexp_stmt') ORDER BY r.rolname, s.total_exec_time DESC`)
	if err != nil {
		b.Fatal(err)
	}
	var stmtList strings.Builder
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, "|", 6)
		if len(f) < 6 {
			continue
		}
		calls, _ := strconv.ParseFloat(f[1], 64)
		rows, _ := strconv.ParseFloat(f[2], 64)
		total, _ := strconv.ParseFloat(f[3], 64)
		mean, _ := strconv.ParseFloat(f[4], 64)
		q := f[5]
		for _, s := range setups {
			if s.role != f[0] {
				continue
			}
			// Our background sampler: the pg_stat_activity read that is
			// not part of the lock collector.
			if s.role == "bitville" && strings.Contains(q, "pg_stat_activity") && !strings.Contains(q, "pg_locks") && !strings.Contains(q, "pg_blocking_pids") && calls > float64(rounds)+1 {
				s.bgStatements++
				s.bgCalls += calls
				s.bgExecMS += total
				s.bgMeanMS = mean
			} else {
				s.statements++
				s.calls += calls
				s.rows += rows
				s.execMS += total
			}
		}
		if len(q) > 110 {
			q = q[:110] + "…"
		}
		fmt.Fprintf(&stmtList, "  %-10s %6.0f calls %8.0f rows %9.3f ms (mean %.4f)  %s\n", f[0], calls, rows, total, mean, q)
	}

	n := float64(rounds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var t strings.Builder
	fmt.Fprintf(&t, "PostgreSQL %s, %d rounds (order rotating), %s between scrapes, run %.1f s; pg_stat_statements: workload + exporters' own entries\n",
		pg.Version(), rounds, pause, wall.Seconds())
	fmt.Fprintf(&t, "%-26s %8s %8s %8s %7s %8s %9s %9s %6s %8s %8s %9s %9s %9s\n", "exporter (per scrape)", "med ms", "p90 ms", "max ms",
		"series", "KiB", "exp CPU", "pg CPU", "stmts", "calls", "rows", "exec ms", "run CPU/s", "pgrun/s")
	for _, s := range setups {
		fmt.Fprintf(&t, "%-26s %8.1f %8.1f %8.1f %7d %8.1f %8.1fms %8.1fms %6d %8.1f %8.0f %9.2f %8.1fms %8.1fms\n", s.name,
			1000*median(s.dur), 1000*percentile(s.dur, 0.9), 1000*slices.Max(s.dur), s.series[len(s.series)-1], float64(s.bytes)/1024,
			ms(s.cpu)/n, ms(s.backendCPU)/n, s.statements, s.calls/n, s.rows/n, s.execMS/n,
			ms(s.runCPU)/wall.Seconds(), ms(s.runBackend)/wall.Seconds())
	}
	fmt.Fprintf(&t, "exp CPU / pg CPU: exporter process and its PostgreSQL backends while scraped (/proc, 10 ms ticks, averaged); run CPU/s, pgrun/s: the same over the whole run, background work included, per wall second; PostgreSQL as a whole: %.1f ms CPU/s\n",
		ms(pgCPU)/wall.Seconds())
	o := setups[0]
	if o.bgCalls > 0 {
		fmt.Fprintf(&t, "our background sampler: %d statement(s), %.0f calls in %.1f s = %.2f queries/s, %.3f ms per sample (mean_exec_time), %.2f ms/s of server time\n",
			o.bgStatements, o.bgCalls, wall.Seconds(), o.bgCalls/wall.Seconds(), o.bgMeanMS, o.bgExecMS/wall.Seconds())
		b.ReportMetric(o.bgCalls/wall.Seconds(), "sampler_queries/s")
		b.ReportMetric(o.bgMeanMS, "sampler_ms/sample")
	} else {
		fmt.Fprintf(&t, "our background sampler: no pg_stat_activity statement of role bitville beyond the scrapes (no sampler in this build, or its samples fail)\n")
	}
	// Our collectors' own view: which succeeded, and the sampler's counts.
	last, _ := scrapeTimed(b, setups[0].url)
	fmt.Fprintf(&t, "pg-exporter's collectors at the end:\n")
	for _, line := range strings.Split(last, "\n") {
		if strings.HasPrefix(line, "bitville_pg_scrape_collector_success{") || strings.HasPrefix(line, "bitville_pg_activity_samples_total{") ||
			strings.HasPrefix(line, "bitville_pg_activity_sample_duration_seconds{") || strings.HasPrefix(line, "bitville_pg_scrape_duration_seconds{") {
			fmt.Fprintf(&t, "  %s\n", line)
		}
	}
	if errs := value(last, `bitville_pg_activity_samples_total{result="error"`); errs > 0 {
		// Failed statements do not reach pg_stat_statements.
		fmt.Fprintf(&t, "pg-exporter: %.0f failed activity samples: the sampler's cost above is incomplete\n", errs)
	}
	fmt.Fprintf(&t, "statements by role (all rounds):\n%s", stmtList.String())
	b.Logf("\n%s", t.String())

	for i, s := range setups {
		key := []string{"ours", "debian", "debian_stmts"}[i]
		b.ReportMetric(1000*median(s.dur), key+"_scrape_ms")
		b.ReportMetric(s.execMS/n, key+"_pg_exec_ms/scrape")
		b.ReportMetric(float64(s.series[len(s.series)-1]), key+"_series")
	}
	b.ReportMetric(median(setups[0].dur)/median(setups[1].dur), "ours/debian_scrape")
	b.ReportMetric(median(setups[0].dur)/median(setups[2].dur), "ours/debian_stmts_scrape")
}

// pgBenchWorkload creates 20 tables and runs 10 statement shapes on each
// (200 distinct pg_stat_statements entries) three times.
func pgBenchWorkload() string {
	shapes := []string{
		"SELECT v FROM w%d WHERE id = 3",
		"SELECT id FROM w%d WHERE v = 'v5'",
		"SELECT count(*) FROM w%d",
		"SELECT max(id), min(id) FROM w%d",
		"SELECT n, count(*) FROM w%d GROUP BY n",
		"SELECT id, v FROM w%d ORDER BY id DESC LIMIT 5",
		"SELECT avg(n) FROM w%d WHERE id < 50",
		"UPDATE w%d SET n = n + 1 WHERE id = 7",
		"SELECT a.id FROM w%d a JOIN w0 b ON a.id = b.id WHERE a.n = 2",
		"SELECT sum(id) FROM w%d WHERE v LIKE 'v1%%'",
	}
	var sb strings.Builder
	for t := 0; t < 20; t++ {
		fmt.Fprintf(&sb, "CREATE TABLE w%d (id int PRIMARY KEY, v text, n int);\nINSERT INTO w%d SELECT g, 'v' || g, g %% 7 FROM generate_series(1, 100) g;\n", t, t)
	}
	for i := 0; i < 3; i++ {
		for t := 0; t < 20; t++ {
			for _, s := range shapes {
				fmt.Fprintf(&sb, s+";\n", t)
			}
		}
	}
	return sb.String()
}

// startPgSessions opens five idle sessions and one running a long query,
// for the exporters' activity and connection figures; they end with the
// benchmark.
func startPgSessions(b *testing.B, pg *stack.Postgres) {
	b.Helper()
	psql := filepath.Join(pg.BinDir, "psql")
	if _, err := os.Stat(psql); err != nil {
		if psql, err = exec.LookPath("psql"); err != nil {
			b.Fatalf("psql not found: %v", err)
		}
	}
	for i := 0; i < 6; i++ {
		args := []string{"--no-psqlrc", "--quiet", "--host", pg.Host, "--port", strconv.Itoa(pg.Port), "--username", pg.User, "--dbname", "postgres"}
		if i == 5 {
			args = append(args, "--command", "SELECT pg_sleep(3600)")
		}
		cmd := exec.Command(psql, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "PGAPPNAME=bench-session"}
		stdin, err := cmd.StdinPipe() // held open: psql waits for input, its session idle
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatalf("cannot start psql: %v", err)
		}
		b.Cleanup(func() {
			_ = stdin.Close()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	waitFor(b, 10*time.Second, func() bool {
		out, err := pg.Exec(context.Background(), "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench-session'")
		return err == nil && out == "6"
	})
}

// startDebianPgExporter runs prometheus-postgres-exporter (its defaults
// plus args) on a free port of 127.0.0.1 and returns its pid and metrics
// URL once it answers. A packaged instance (systemd) is left alone.
func startDebianPgExporter(b *testing.B, dsn string, args ...string) (int, string) {
	b.Helper()
	port, err := stack.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(debianPgExporter, append([]string{"--web.listen-address=" + addr}, args...)...)
	cmd.Env = append(os.Environ(), "DATA_SOURCE_NAME="+dsn)
	url := "http://" + addr + "/metrics"
	startHTTPProcess(b, cmd, url)
	return cmd.Process.Pid, url
}

// checkPgExporterUp fails the benchmark unless the exporter reached
// PostgreSQL and (for those that collect it) read pg_stat_statements.
func checkPgExporterUp(b *testing.B, s *pgExpSetup, body string) {
	b.Helper()
	var want []string
	switch s.role {
	case "bitville":
		want = []string{`bitville_pg_up{`, `bitville_pg_statement_calls_total{`}
		if value(body, `bitville_pg_scrape_collector_success{`) == 0 {
			b.Fatalf("%s: no collector succeeded:\n%s", s.name, body)
		}
	case "pgexp":
		want = []string{"pg_up 1", "pg_stat_database_xact_commit{"}
	default:
		want = []string{"pg_up 1", "pg_stat_statements_calls{"}
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			b.Fatalf("%s: the scrape lacks %s:\n%s", s.name, w, body)
		}
	}
}

// scrapeTimed fetches a /metrics page in the text format and returns it
// and the wall time until the last byte.
func scrapeTimed(b *testing.B, url string) (string, time.Duration) {
	b.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("Accept-Encoding", "identity")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("cannot scrape %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	d := time.Since(start)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("scrape %s: status %d, %v: %s", url, resp.StatusCode, err, body)
	}
	return string(body), d
}

// countSamples counts the sample lines of an exposition.
func countSamples(body string) int {
	n := 0
	for _, line := range strings.Split(body, "\n") {
		if line != "" && line[0] != '#' {
			n++
		}
	}
	return n
}

// roleBackends returns the pids of the sessions role has open.
func roleBackends(b *testing.B, ctx context.Context, pg *stack.Postgres, role string) []int {
	b.Helper()
	out, err := pg.Exec(ctx, "postgres", "SELECT pid FROM pg_stat_activity WHERE usename = '"+role+"' ORDER BY pid")
	if err != nil {
		b.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidsCPU is the CPU the processes have used so far.
func pidsCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		if _, self, reaped, ok := procStat(pid); ok {
			sum += self + reaped
		}
	}
	return sum
}

func percentile(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[int(p*float64(len(s)-1)+0.5)]
}

// debianStatementsQuery is the pg_stat_statements query of
// prometheus-postgres-exporter's example queries.yaml
// (/usr/share/doc/prometheus-postgres-exporter/examples/), with the
// column names of PostgreSQL 13 and later (total_exec_time, …): the
// example's total_time and friends no longer exist.
const debianStatementsQuery = `pg_stat_statements:
  query: "SELECT t2.rolname, t3.datname, queryid, calls, total_exec_time / 1000 as total_time_seconds, min_exec_time / 1000 as min_time_seconds, max_exec_time / 1000 as max_time_seconds, mean_exec_time / 1000 as mean_time_seconds, stddev_exec_time / 1000 as stddev_time_seconds, rows, shared_blks_hit, shared_blks_read, shared_blks_dirtied, shared_blks_written, local_blks_hit, local_blks_read, local_blks_dirtied, local_blks_written, temp_blks_read, temp_blks_written, blk_read_time / 1000 as blk_read_time_seconds, blk_write_time / 1000 as blk_write_time_seconds FROM pg_stat_statements t1 JOIN pg_roles t2 ON (t1.userid=t2.oid) JOIN pg_database t3 ON (t1.dbid=t3.oid) WHERE t2.rolname != 'rdsadmin'"
  master: true
  metrics:
    - rolname: {usage: "LABEL", description: "Name of user"}
    - datname: {usage: "LABEL", description: "Name of database"}
    - queryid: {usage: "LABEL", description: "Query ID"}
    - calls: {usage: "COUNTER", description: "Number of times executed"}
    - total_time_seconds: {usage: "COUNTER", description: "Total time spent in the statement"}
    - min_time_seconds: {usage: "GAUGE", description: "Minimum time spent in the statement"}
    - max_time_seconds: {usage: "GAUGE", description: "Maximum time spent in the statement"}
    - mean_time_seconds: {usage: "GAUGE", description: "Mean time spent in the statement"}
    - stddev_time_seconds: {usage: "GAUGE", description: "Population standard deviation of time spent in the statement"}
    - rows: {usage: "COUNTER", description: "Total number of rows retrieved or affected by the statement"}
    - shared_blks_hit: {usage: "COUNTER", description: "Total number of shared block cache hits by the statement"}
    - shared_blks_read: {usage: "COUNTER", description: "Total number of shared blocks read by the statement"}
    - shared_blks_dirtied: {usage: "COUNTER", description: "Total number of shared blocks dirtied by the statement"}
    - shared_blks_written: {usage: "COUNTER", description: "Total number of shared blocks written by the statement"}
    - local_blks_hit: {usage: "COUNTER", description: "Total number of local block cache hits by the statement"}
    - local_blks_read: {usage: "COUNTER", description: "Total number of local blocks read by the statement"}
    - local_blks_dirtied: {usage: "COUNTER", description: "Total number of local blocks dirtied by the statement"}
    - local_blks_written: {usage: "COUNTER", description: "Total number of local blocks written by the statement"}
    - temp_blks_read: {usage: "COUNTER", description: "Total number of temp blocks read by the statement"}
    - temp_blks_written: {usage: "COUNTER", description: "Total number of temp blocks written by the statement"}
    - blk_read_time_seconds: {usage: "COUNTER", description: "Total time the statement spent reading blocks"}
    - blk_write_time_seconds: {usage: "COUNTER", description: "Total time the statement spent writing blocks"}
`
