package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// TestAgentFPMFlags runs the binary against a real php-fpm pool, configured
// through the environment (two status URIs, one of them dead), a flag and
// the YAML file, and checks what the fpm flags turn into.
func TestAgentFPMFlags(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fpm, err := stack.StartFPM(ctx, stack.FPMConfig{Dir: t.TempDir(), Pool: "www", Children: 2, SlowlogTimeout: time.Second})
	if err != nil {
		t.Fatalf("cannot start php-fpm: %v", err)
	}
	t.Cleanup(func() { _ = fpm.Stop() })
	dir := t.TempDir()
	dead := "unix://" + filepath.Join(dir, "dead.sock") + ";/status"
	bin := buildBinary(t)

	t.Setenv("BITVILLE_FPM_STATUS_URI", "unix://"+fpm.Socket+";"+fpm.StatusPath+","+dead)
	p := startAgent(t, bin, "--fpm.slowlog="+fpm.SlowlogPath, "--fpm.status-timeout=500ms")
	var out string
	// php-fpm counts its children in the status page within a second of
	// its start; wait for that too.
	waitFor(t, 10*time.Second, func() bool {
		out = p.scrape(t)
		return value(out, `bitville_fpm_up{pool="www"}`) == 1 && strings.Contains(out, `bitville_fpm_up{pool="`+dead+`"} 0`) &&
			value(out, `bitville_fpm_total_processes{pool="www"}`) == 2
	})
	for _, want := range []string{`bitville_fpm_status_errors_total{pool="` + dead + `",reason="connect"}`, `bitville_fpm_slowlog_entries_total{pool="www"} 0`} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, b)
	}
	resp, err := http.Get(p.base + "/api/v1/fpm")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Pools []struct {
			Pool string
			Up   bool
		}
		Slowlogs []struct{ Path, Error string }
	}
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if err != nil || len(view.Pools) != 2 || !view.Pools[0].Up || view.Pools[1].Up || len(view.Slowlogs) != 1 || view.Slowlogs[0].Path != fpm.SlowlogPath {
		t.Errorf("got /api/v1/fpm %+v, %v", view, err)
	}
	os.Unsetenv("BITVILLE_FPM_STATUS_URI")

	// The YAML file takes a list.
	cfg := filepath.Join(dir, "agent.yml")
	yml := "fpm:\n  status-uri:\n    - unix://" + fpm.Socket + ";" + fpm.StatusPath + "\n    - " + dead + "\n  poll-interval: 0s\n"
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	p = startAgent(t, bin, "--config.file="+cfg)
	waitFor(t, 10*time.Second, func() bool {
		out = p.scrape(t)
		return value(out, `bitville_fpm_up{pool="www"}`) == 1 && strings.Contains(out, `bitville_fpm_up{pool="`+dead+`"} 0`)
	})

	// A bad URI is a configuration error that names the flag.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "agent", "--agent.socket="+filepath.Join(dir, "a.sock"), "--web.listen-address=127.0.0.1:0",
		"--fpm.status-uri=http://127.0.0.1/status").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "fpm.status-uri") {
		t.Errorf("got %v, %s; want an error naming fpm.status-uri", err, b)
	}
	b, err = exec.CommandContext(ctx, bin, "agent", "--help").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--fpm.status-uri", "BITVILLE_FPM_STATUS_URI", "--fpm.slowlog", "--fpm.status-timeout", "--fpm.poll-interval"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("agent --help does not mention %s", want)
		}
	}
}
