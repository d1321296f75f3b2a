package stack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func startCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// writeApp writes a front controller that reports what PHP saw.
func writeApp(t *testing.T) (root, prepend string) {
	t.Helper()
	root = t.TempDir()
	app := `<?php
declare(strict_types=1);
header('Content-Type: application/json');
echo json_encode([
    'uri' => $_SERVER['REQUEST_URI'] ?? null,
    'script' => $_SERVER['SCRIPT_NAME'] ?? null,
    'env' => getenv('STACK_TEST_VALUE'),
    'ini' => ini_get('memory_limit'),
    'prepended' => defined('STACK_TEST_PREPENDED'),
    'sapi' => PHP_SAPI,
    'tideways' => extension_loaded('tideways_xhprof'),
    'excimer' => extension_loaded('excimer'),
]);
`
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "robots.txt"), []byte("static\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prepend = filepath.Join(t.TempDir(), "prepend.php")
	if err := os.WriteFile(prepend, []byte("<?php define('STACK_TEST_PREPENDED', true);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, prepend
}

func TestFPMBehindNginx(t *testing.T) {
	root, prepend := writeApp(t)
	// A value that needs every kind of INI quoting.
	tricky := `pgsql:host=127.0.0.1;port=5432;dbname=app ${HOME} "q" \n $x`
	for _, withPrepend := range []bool{false, true} {
		name := "plain"
		if withPrepend {
			name = "prepend"
		}
		t.Run(name, func(t *testing.T) {
			c := FPMConfig{
				Dir:      t.TempDir(),
				Children: 2,
				Env:      map[string]string{"STACK_TEST_VALUE": tricky},
				INI:      map[string]string{"memory_limit": "96M"},
			}
			if withPrepend {
				c.PrependFile = prepend
				c.WithoutExtensions = []string{"tideways_xhprof"}
			}
			fpm, err := StartFPM(startCtx(t), c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = fpm.Stop() })
			ngx, err := StartNginx(startCtx(t), NginxConfig{Dir: t.TempDir(), Root: root, FastCGISocket: fpm.Socket})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ngx.Stop() })

			code, body := get(t, ngx.URL+"/orders/12?x=1")
			if code != 200 {
				t.Fatalf("GET /orders/12: got %d %s; want 200", code, body)
			}
			var got struct {
				URI, Script, Env, Ini, Sapi  string
				Prepended, Tideways, Excimer bool
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("cannot decode %q: %v", body, err)
			}
			if got.URI != "/orders/12?x=1" || got.Script != "/index.php" || got.Env != tricky || got.Ini != "96M" || got.Sapi != "fpm-fcgi" || got.Prepended != withPrepend {
				t.Errorf("got %+v; want uri /orders/12?x=1, script /index.php, env %q, ini 96M, sapi fpm-fcgi, prepended %v", got, tricky, withPrepend)
			}
			// scripts/deps.sh installs both; the prepend pool leaves one out.
			if got.Tideways == withPrepend || !got.Excimer {
				t.Errorf("got tideways_xhprof loaded %v, excimer %v; want tideways %v (WithoutExtensions) and excimer true", got.Tideways, got.Excimer, !withPrepend)
			}
			if code, body := get(t, ngx.URL+"/robots.txt"); code != 200 || body != "static\n" {
				t.Errorf("GET /robots.txt: got %d %q; want the static file", code, body)
			}
			if code, body := get(t, ngx.URL+"/other.php"); code != 200 || !strings.Contains(body, `"uri":"\/other.php"`) {
				t.Errorf("GET /other.php: got %d %q; want the front controller", code, body)
			}
			code, body = get(t, ngx.URL+"/status?json")
			var st struct {
				Pool           string `json:"pool"`
				TotalProcesses int    `json:"total processes"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Pool != "www" || st.TotalProcesses != 2 {
				t.Errorf("GET /status?json: got %d %q; want pool www with 2 processes", code, body)
			}
			if code, body := get(t, ngx.URL+"/ping"); code != 200 || body != "pong" {
				t.Errorf("GET /ping: got %d %q; want pong", code, body)
			}

			master := fpm.MasterPID()
			if err := fpm.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(-master, 0); err == nil {
				t.Errorf("php-fpm process group %d still has processes after Stop", master)
			}
			if _, err := os.Stat(fpm.Socket); !os.IsNotExist(err) {
				t.Errorf("socket %s still there after Stop (%v)", fpm.Socket, err)
			}
			if b, _ := os.ReadFile(fpm.PHPErrorLog); len(b) > 0 {
				t.Errorf("PHP error log is not empty:\n%s", b)
			}
		})
	}
}

func TestFPMStartErrorQuotesLog(t *testing.T) {
	_, err := StartFPM(startCtx(t), FPMConfig{Dir: t.TempDir(), INI: map[string]string{"memory_limit": "64M"}, Env: map[string]string{"BAD": "a\nb"}})
	if err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("got %v; want an error about the line break", err)
	}
	// php-fpm itself rejects the pool: the error quotes its log.
	_, err = StartFPM(startCtx(t), FPMConfig{Dir: t.TempDir(), INI: map[string]string{"memory_limit": "64M"}, Env: map[string]string{}, Pool: "www", Children: 1, StatusPath: "no-slash"})
	if err == nil || !strings.Contains(err.Error(), "fpm.log says") || !strings.Contains(err.Error(), "status path") {
		t.Errorf("got %v; want php-fpm's own complaint about pm.status_path", err)
	}
}

func TestSlowlogAndTerminate(t *testing.T) {
	root := t.TempDir()
	app := `<?php
function wait_in_named_function(float $s): void { $end = microtime(true) + $s; while (microtime(true) < $end) { usleep(20000); } }
wait_in_named_function((float)($_GET['s'] ?? 0));
echo "done";
`
	if err := os.WriteFile(filepath.Join(root, "index.php"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	fpm, err := StartFPM(startCtx(t), FPMConfig{Dir: t.TempDir(), Children: 2, SlowlogTimeout: time.Second, TerminateTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fpm.Stop() })
	ngx, err := StartNginx(startCtx(t), NginxConfig{Dir: t.TempDir(), Root: root, FastCGISocket: fpm.Socket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ngx.Stop() })
	if code, body := get(t, ngx.URL+"/?s=1.5"); code != 200 || body != "done" {
		t.Errorf("slow request: got %d %q; want 200 done", code, body)
	}
	if code, _ := get(t, ngx.URL+"/?s=10"); code != 502 {
		t.Errorf("request past request_terminate_timeout: got %d; want 502", code)
	}
	var slow, fpmLog []byte
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		slow, _ = os.ReadFile(fpm.SlowlogPath)
		fpmLog, _ = os.ReadFile(fpm.ErrorLog)
		if strings.Contains(string(slow), "wait_in_named_function()") && strings.Contains(string(fpmLog), "execution timed out") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(string(slow), "wait_in_named_function()") {
		t.Errorf("slowlog has no entry with wait_in_named_function:\n%s", slow)
	}
	if !strings.Contains(string(fpmLog), "execution timed out") {
		t.Errorf("fpm log does not record the terminated request:\n%s", fpmLog)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Errorf("got %d, %v; want a port", p, err)
	}
}

func TestPostgres(t *testing.T) {
	pg, err := StartPostgres(startCtx(t), PostgresConfig{
		Dir:      t.TempDir(),
		Preload:  []string{"pg_stat_statements"},
		Settings: map[string]string{"pg_stat_statements.track": "all"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	ctx := startCtx(t)
	if err := pg.CreateDB(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	out, err := pg.Exec(ctx, "shop", "CREATE EXTENSION pg_stat_statements; CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); SELECT count(*) FROM t; SHOW pg_stat_statements.track;")
	if err != nil || out != "2\nall" {
		t.Errorf("got %q, %v; want \"2\\nall\"", out, err)
	}
	if _, err := pg.Exec(ctx, "shop", "SELECT * FROM missing_table"); err == nil || !strings.Contains(err.Error(), "missing_table") {
		t.Errorf("got %v; want psql's error naming missing_table", err)
	}
	if got := pg.DSN("shop"); !strings.HasPrefix(got, "postgres://postgres@127.0.0.1:") || !strings.HasSuffix(got, "/shop?sslmode=disable") {
		t.Errorf("DSN: got %s", got)
	}
	data := pg.DataDir
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("data directory %s still there after Stop (%v)", data, err)
	}
	if b, _ := os.ReadFile(pg.Log); !strings.Contains(string(b), "database system is shut down") {
		t.Errorf("server log does not show a clean shutdown:\n%s", b)
	}
}

// TestShopWithoutAgent runs the example application on the real stack
// without the APM agent: every endpoint answers as designed.
func TestShopWithoutAgent(t *testing.T) {
	shop, err := StartShop(startCtx(t), ShopConfig{
		Dir:              t.TempDir(),
		Children:         3,
		SlowlogTimeout:   time.Second,
		TerminateTimeout: 2 * time.Second,
		Env:              map[string]string{"APP_PRICING_ROUNDS": "2000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shop.Stop() })
	tests := []struct {
		path string
		code int
		body string // a substring
	}{
		{"/cheap", 200, `{"status":"ok"}`},
		{"/orders/7", 200, `"id":7,"status":"paid","customer":{"name":"Customer 8"`},
		{"/orders/99999", 404, `order not found`},
		{"/orders/abc", 404, `not found`},
		{"/report", 200, `"products":200`},
		{"/slow-sql", 200, `{"orders":1000}`},
		{"/nowhere", 404, `not found`},
		{"/stuck", 502, `502 Bad Gateway`},
	}
	for _, tt := range tests {
		code, body := get(t, shop.URL+tt.path)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s: got %d %q; want %d with %q", tt.path, code, body, tt.code, tt.body)
		}
	}
	// Deterministic: the same request gives the same body.
	_, a := get(t, shop.URL+"/orders/7")
	_, b := get(t, shop.URL+"/orders/7")
	if a != b {
		t.Errorf("GET /orders/7 twice: %q then %q", a, b)
	}
	out, err := shop.RunCLI(startCtx(t), "bin/reindex.php")
	if err != nil || string(out) != "reindexed 600 search terms\n" {
		t.Errorf("reindex: got %q, %v", out, err)
	}
	views, err := shop.PG.Exec(startCtx(t), shop.DB, "SELECT view_count FROM orders WHERE id = 7")
	if err != nil || views != "3" {
		t.Errorf("view_count of order 7: got %q, %v; want 3", views, err)
	}
	for _, f := range []string{shop.FPM.PHPErrorLog, shop.CLIErrorLog()} {
		if b, _ := os.ReadFile(f); len(b) > 0 {
			t.Errorf("%s is not empty:\n%s", f, b)
		}
	}
}

func TestCopyIniWithout(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "conf.d")
	files := map[string]string{
		"10-opcache.ini":  "zend_extension=opcache.so\nopcache.enable=1\n",
		"20-tideways.ini": "; the call graph\nextension=tideways_xhprof.so\ntideways.auto_prepend_library=0\n",
		"20-excimer.ini":  "extension = \"excimer\"\n",
		"notes.txt":       "extension=tideways_xhprof.so\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyIniWithout(src, dst, []string{"tideways_xhprof"}); err != nil {
		t.Fatal(err)
	}
	got, _ := filepath.Glob(filepath.Join(dst, "*"))
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	if strings.Join(got, " ") != "10-opcache.ini 20-excimer.ini" {
		t.Errorf("copied %v; want 10-opcache.ini 20-excimer.ini", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "10-opcache.ini")); string(b) != files["10-opcache.ini"] {
		t.Errorf("10-opcache.ini copied as %q", b)
	}
	// A name no file loads is an error, not a silent no-op.
	if err := copyIniWithout(src, filepath.Join(t.TempDir(), "x"), []string{"xdebug"}); err == nil || !strings.Contains(err.Error(), `"xdebug"`) {
		t.Errorf("leaving out xdebug: got %v; want an error naming it", err)
	}
	if err := copyIniWithout(src, filepath.Join(t.TempDir(), "y"), []string{"excimer"}); err != nil {
		t.Errorf("leaving out excimer (quoted, spaced): %v", err)
	}
}
