package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/promtest"
)

// startAs runs program under the name comm (a symlink of that name: the
// kernel takes comm from the executed path's last element) and stops it
// when the test ends.
func startAs(t testing.TB, comm, program string, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		t.Fatalf("%s not found: %v", program, err)
	}
	link := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// TestRealProc reads the real /proc: processes the test started are found
// under their names and groups, and a CPU-burning one has its CPU counted.
func TestRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Fatalf("no /proc: %v", err)
	}
	sleeper := startAs(t, "bvtestproc", "sleep", "600")
	php := startAs(t, "php-bvtest", "sleep", "600")
	burner := startAs(t, "bvburn", "sha256sum", "/dev/zero")

	cfg := DefaultConfig()
	reg := prometheus.NewRegistry()
	c := New(Options{Config: cfg, SeriesTTL: time.Hour}, reg)
	c.Scan()
	find := func(cmd *exec.Cmd) (procState, bool) {
		p, ok := c.scanner.procs[cmd.Process.Pid]
		return p, ok
	}
	// The processes were started before the first scan: it finds them
	// (exec may still be under way: wait for the new comm).
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, ok1 := find(sleeper)
		p, ok2 := find(php)
		if ok1 && ok2 && s.key == (nameKey{"bvtestproc", GroupOther}) && p.key == (nameKey{"php-bvtest", GroupPHP}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %+v, %+v; want bvtestproc in group other and php-bvtest in group php", s.key, p.key)
		}
		time.Sleep(50 * time.Millisecond)
		c.Scan()
	}
	if b, ok := find(burner); !ok || b.key != (nameKey{"bvburn", GroupOther}) {
		t.Fatalf("got %+v; want bvburn in group other", b.key)
	}
	// bvburn uses a core: it becomes a top name and its CPU grows.
	const series = "bitville_host_process_cpu_seconds_total{group=other,name=bvburn}"
	var last float64
	grew := 0
	for deadline := time.Now().Add(20 * time.Second); grew < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%s grew %d times in 20s; want 2", series, grew)
		}
		time.Sleep(200 * time.Millisecond)
		c.Scan()
		v, ok := promtest.Series(t, reg, "bitville_host_process_cpu_seconds_total")[series]
		if ok && v > last {
			grew++
			last = v
		}
	}
	got := promtest.Series(t, reg, "bitville_host_")
	if got["bitville_host_processes{}"] < 4 || got["bitville_host_scan_errors_total{reason=proc}"] != 0 {
		t.Errorf("got %v processes, %v proc errors; want at least 4 and none", got["bitville_host_processes{}"], got["bitville_host_scan_errors_total{reason=proc}"])
	}
}
