package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/sqlfp"
	"github.com/bitville/bitville-apm/internal/stack"
)

// TestPgExporterEndToEnd runs the real binary against a throwaway
// PostgreSQL with pg_stat_statements: the statement the PHP agent would
// report under a fingerprint shows under the same query_fp here, the
// exposition passes promtool, and SIGTERM stops the exporter cleanly.
func TestPgExporterEndToEnd(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{Dir: filepath.Join(t.TempDir(), "pg"), Preload: []string{"pg_stat_statements"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	if _, err := pg.Exec(ctx, "postgres", "CREATE EXTENSION pg_stat_statements; CREATE TABLE customers (id int PRIMARY KEY, country text); INSERT INTO customers VALUES (1, 'DE'), (2, 'FR');"); err != nil {
		t.Fatal(err)
	}

	bin := buildBinary(t)
	p := runAgent(t, exec.Command(bin, "--log.format=json", "pg-exporter", "--pg.dsn="+pg.DSN("postgres"), "--web.listen-address=127.0.0.1:0"), "")
	if _, err := pg.Exec(ctx, "postgres", "SELECT c.country FROM customers c WHERE c.id = 1; SELECT c.country FROM customers c WHERE c.id = 2;"); err != nil {
		t.Fatal(err)
	}
	// What the PHP agent sends for the same statement (PDO placeholder,
	// sqlcommenter tag) has this fingerprint.
	fp := sqlfp.Fingerprint("SELECT c.country FROM customers c WHERE c.id = ? /*endpoint='GET%20%2Fquote%2F%7Bid%7D'*/").Fingerprint
	var out string
	waitFor(t, 10*time.Second, func() bool {
		out = p.scrape(t)
		return value(out, `bitville_pg_statement_calls_total{datname="postgres",query_fp="`+fp+`"`) >= 2
	})
	if got := value(out, `bitville_pg_statement_calls_total{datname="postgres",query_fp="`+fp+`"`); got != 2 {
		t.Errorf("calls of %s: got %v; want 2", fp, got)
	}
	for _, want := range []string{`bitville_pg_up{server="127.0.0.1:`, `bitville_sql_query_info{query="SELECT c.country FROM customers c WHERE c.id = $1",query_fp="` + fp + `"} 1`,
		`bitville_pg_scrape_collector_success{collector="statements",`, `bitville_pg_exporter_build_info{`} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, b)
	}

	stopDaemon(t, p)
}
