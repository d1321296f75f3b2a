package compose

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// TestPostgresInit runs postgres/initdb/10-shop.sh against a throwaway
// PostgreSQL started like the postgres service (its -c settings), with
// the service's environment, then checks the result as the shop and the
// pg-exporter will see it, with password authentication.
func TestPostgresInit(t *testing.T) {
	if _, err := exec.LookPath("initdb"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) == 0 {
			t.Skip("PostgreSQL server binaries are not installed (Debian: postgresql, or scripts/deps.sh)")
		}
	}
	p := loadProject(t)
	pgSvc := service(t, p, "postgres")
	settings := map[string]string{}
	var preload []string
	for i := 0; i+1 < len(pgSvc.Command); i++ {
		if pgSvc.Command[i] == "-c" {
			k, v, _ := strings.Cut(pgSvc.Command[i+1], "=")
			if k == "shared_preload_libraries" {
				preload = strings.Split(v, ",")
			} else {
				settings[k] = v
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := stack.StartPostgres(ctx, stack.PostgresConfig{Dir: t.TempDir(), Preload: preload, Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })

	initdb := locate(pgSvc, "/docker-entrypoint-initdb.d")
	scripts, _ := filepath.Glob(filepath.Join(initdb.Where, "*.sh"))
	sqlDir, _ := envValue(pgSvc, "SHOP_SQL_DIR")
	env := []string{
		"PATH=" + pg.BinDir + ":/usr/bin:/bin",
		"LC_ALL=C",
		"PGHOST=" + pg.Host,
		"PGPORT=" + strconv.Itoa(pg.Port),
		"POSTGRES_USER=" + pg.User,
		"SHOP_SQL_DIR=" + locate(pgSvc, sqlDir).Where,
	}
	for _, k := range []string{"POSTGRES_PASSWORD", "SHOP_DB_PASSWORD", "BITVILLE_PG_PASSWORD"} {
		v, _ := envValue(pgSvc, k)
		env = append(env, k+"="+v)
	}
	for _, s := range scripts {
		cmd := exec.CommandContext(ctx, "bash", s)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", rel(repoRoot(t), s), err, out)
		}
	}

	// From here on, passwords count for TCP connections of everyone but
	// the superuser (the postgres image's own setup).
	hba := filepath.Join(pg.DataDir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	got, err := pg.Exec(ctx, "shop", `SELECT
		(SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'),
		pg_has_role('bitville', 'pg_monitor', 'member'),
		(SELECT rolcanlogin FROM pg_roles WHERE rolname = 'bitville'),
		(SELECT tableowner FROM pg_tables WHERE tablename = 'orders')`)
	if err != nil {
		t.Fatal(err)
	}
	if got != "1|t|t|shop" {
		t.Errorf("after the init scripts: pg_stat_statements in shop, bitville in pg_monitor, bitville can log in, orders owned by shop: got %q; want 1|t|t|shop", got)
	}

	// The shop, as the pool connects (APP_DB_USER, APP_DB_PASSWORD).
	shop := service(t, p, "shop")
	user, _ := envValue(shop, "APP_DB_USER")
	password, _ := envValue(shop, "APP_DB_PASSWORD")
	psql := exec.CommandContext(ctx, filepath.Join(pg.BinDir, "psql"), "--no-psqlrc", "-Atc", "SELECT count(*) FROM orders",
		fmt.Sprintf("host=%s port=%d dbname=shop user=%s", pg.Host, pg.Port, user))
	psql.Env = []string{"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=5", "LC_ALL=C"}
	if out, err := psql.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1000" {
		t.Errorf("the shop's user %s with its password: SELECT count(*) FROM orders: %v: %s (want 1000)", user, err, out)
	}

	// The pg-exporter with the service's DSN (host and port of this
	// server) and environment: every collector must succeed.
	exporter := service(t, p, "pg-exporter")
	dsn, err := url.Parse(flagValue(exporter.Command, "pg.dsn"))
	if err != nil {
		t.Fatal(err)
	}
	dsn.Host = fmt.Sprintf("%s:%d", pg.Host, pg.Port)
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bitvilleBinary(t), "pg-exporter", "--pg.dsn="+dsn.String(), fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	pgpass, _ := envValue(exporter, "PGPASSWORD")
	cmd.Env = []string{"PGPASSWORD=" + pgpass}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	metrics := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if metrics = string(b); strings.Contains(metrics, "bitville_pg_up") {
			break
		}
	}
	var problems []string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "bitville_pg_up{") && !strings.HasSuffix(line, " 1") ||
			strings.HasPrefix(line, "bitville_pg_scrape_collector_success{") && !strings.HasSuffix(line, " 1") ||
			strings.HasPrefix(line, "bitville_pg_statements_hidden_entries{") && !strings.HasSuffix(line, " 0") {
			problems = append(problems, line)
		}
	}
	if !strings.Contains(metrics, "bitville_pg_up") || len(problems) > 0 {
		t.Errorf("pg-exporter as bitville on the initialised database: %v\nlog:\n%s", problems, logs.String())
	}
}
