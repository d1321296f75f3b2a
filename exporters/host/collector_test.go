package host

import (
	"flag"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/bitville/bitville-apm/internal/promtest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestTwoScans reads the fixture tree twice, five seconds apart, and checks
// every series. What happened between the scans (scan1 → scan2):
//
//   - php-fpm8.2 worker 101 (R) used 150 ticks, the master 100 two, and
//     worker 102 exited: it had 40 ticks at the first scan; the master's
//     cutime+cstime grew by 85 (102's final 65 and a worker that lived and
//     died between the scans, 20), so 85-40 = 45 go to the master's name:
//     197 ticks.
//   - postgres: backend 201 80 ticks, postmaster 200 one.
//   - kworker/1:2-events (now D) 3 ticks, kworker/0:1H-kblockd 2: one name.
//   - bvindexer, three threads, one D and one R: 250 ticks.
//   - "bad) name (x)": 10 ticks.
//   - bvbackup started after the first scan: all its 350 ticks.
//   - pid 999's stat does not parse: one error, nothing else lost.
func TestTwoScans(t *testing.T) {
	f := newFixture(t, testConfig(), time.Hour)
	f.scan("scan1", 0)
	got := promtest.Series(t, f.reg, "bitville_host_")
	first := map[string]float64{
		// At the first scan nothing is counted; the names are ranked by
		// tasks running and uninterruptible: only php-fpm8.2 has one.
		"bitville_host_process_cpu_seconds_total{group=php,name=php-fpm8.2}":       0,
		"bitville_host_tasks{group=php,name=php-fpm8.2,state=running}":             1,
		"bitville_host_tasks{group=php,name=php-fpm8.2,state=uninterruptible}":     0,
		"bitville_host_pressure_stalled_seconds_total{resource=cpu,scope=some}":    1.5,
		"bitville_host_pressure_stalled_seconds_total{resource=cpu,scope=full}":    0,
		"bitville_host_pressure_stalled_seconds_total{resource=io,scope=some}":     3.188735,
		"bitville_host_pressure_stalled_seconds_total{resource=io,scope=full}":     2.854923,
		"bitville_host_pressure_stalled_seconds_total{resource=memory,scope=some}": 0,
		"bitville_host_pressure_stalled_seconds_total{resource=memory,scope=full}": 0,
		"bitville_host_scans_total{}":                                              1,
		"bitville_host_scan_errors_total{reason=proc}":                             0,
		"bitville_host_scan_errors_total{reason=stat}":                             0,
		"bitville_host_scan_errors_total{reason=pressure}":                         0,
		"bitville_host_scan_duration_seconds{}":                                    0,
		"bitville_host_processes{}":                                                11,
	}
	diff(t, "first scan", got, first)

	f.scan("scan2", 5*time.Second)
	got = promtest.Series(t, f.reg, "bitville_host_")
	want := map[string]float64{
		"bitville_host_process_cpu_seconds_total{group=php,name=php-fpm8.2}":        1.97,
		"bitville_host_process_cpu_seconds_total{group=postgres,name=postgres}":     0.81,
		"bitville_host_process_cpu_seconds_total{group=kernel,name=kworker}":        0.05,
		"bitville_host_process_cpu_seconds_total{group=other,name=bvindexer}":       2.5,
		"bitville_host_process_cpu_seconds_total{group=other,name=bad) name (x)}":   0.1,
		"bitville_host_process_cpu_seconds_total{group=other,name=bvbackup}":        3.5,
		"bitville_host_tasks{group=php,name=php-fpm8.2,state=running}":              1,
		"bitville_host_tasks{group=php,name=php-fpm8.2,state=uninterruptible}":      0,
		"bitville_host_tasks{group=postgres,name=postgres,state=running}":           1,
		"bitville_host_tasks{group=postgres,name=postgres,state=uninterruptible}":   0,
		"bitville_host_tasks{group=kernel,name=kworker,state=running}":              0,
		"bitville_host_tasks{group=kernel,name=kworker,state=uninterruptible}":      1,
		"bitville_host_tasks{group=other,name=bvindexer,state=running}":             1,
		"bitville_host_tasks{group=other,name=bvindexer,state=uninterruptible}":     1,
		"bitville_host_tasks{group=other,name=bad) name (x),state=running}":         0,
		"bitville_host_tasks{group=other,name=bad) name (x),state=uninterruptible}": 0,
		"bitville_host_tasks{group=other,name=bvbackup,state=running}":              1,
		"bitville_host_tasks{group=other,name=bvbackup,state=uninterruptible}":      0,
		"bitville_host_pressure_stalled_seconds_total{resource=cpu,scope=some}":     4,
		"bitville_host_pressure_stalled_seconds_total{resource=cpu,scope=full}":     0,
		"bitville_host_pressure_stalled_seconds_total{resource=io,scope=some}":      3.688735,
		"bitville_host_pressure_stalled_seconds_total{resource=io,scope=full}":      3.254923,
		"bitville_host_pressure_stalled_seconds_total{resource=memory,scope=some}":  0,
		"bitville_host_pressure_stalled_seconds_total{resource=memory,scope=full}":  0,
		"bitville_host_scans_total{}":                                               2,
		"bitville_host_scan_errors_total{reason=proc}":                              0,
		"bitville_host_scan_errors_total{reason=stat}":                              1,
		"bitville_host_scan_errors_total{reason=pressure}":                          0,
		"bitville_host_scan_duration_seconds{}":                                     0,
		"bitville_host_processes{}":                                                 11,
	}
	diff(t, "second scan", got, want)
	if n := len(f.c.scanner.procs); n != 11 {
		t.Errorf("got %d processes remembered; want 11 (102 pruned)", n)
	}
	agent := promtest.Series(t, f.reg, "bitville_agent_")
	diff(t, "series counters", agent, map[string]float64{
		"bitville_agent_series_overflow_total{label=process_name}": 0,
		"bitville_agent_series_expired_total{label=process_name}":  0,
	})

	checkGolden(t, f)
}

// checkGolden compares the whole exposition with testdata/host-metrics.golden
// and lints it with promtool.
func checkGolden(t *testing.T, f *fixture) {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	got := b.String()
	const golden = "testdata/host-metrics.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestTwoScans -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("metrics differ from %s (rerun with -update if the change is intended):\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (Debian package prometheus; `make deps` installs it): %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(got)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestTopNamesOverflowExpiry ranks the second scan's names with two top
// names and room for two names with series.
func TestTopNamesOverflowExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.TopNames, cfg.ProcessNames = 2, 2
	f := newFixture(t, cfg, time.Minute)
	f.scan("scan1", 0) // php-fpm8.2 gets series: the only running task
	// Ranked by cores over 5 s plus D tasks: bvindexer 0.5+1, kworker
	// 0.01+1, bvbackup 0.7, php-fpm8.2 0.394, postgres 0.162, "bad) name
	// (x)" 0.02. The top two are bvindexer and kworker; kworker finds the
	// limit reached (php-fpm8.2, bvindexer) and overflows to other;
	// php-fpm8.2, not in the top, keeps its series while active.
	f.scan("scan2", 5*time.Second)
	got := promtest.Series(t, f.reg, "bitville_host_process_cpu_seconds_total")
	diff(t, "cpu", got, map[string]float64{
		"bitville_host_process_cpu_seconds_total{group=php,name=php-fpm8.2}":  1.97,
		"bitville_host_process_cpu_seconds_total{group=other,name=bvindexer}": 2.5,
		// kworker 5 + bvbackup 350 + postgres 81 + "bad) name (x)" 10 ticks
		"bitville_host_process_cpu_seconds_total{group=other,name=other}": 4.46,
	})
	got = promtest.Series(t, f.reg, "bitville_host_tasks")
	maps.DeleteFunc(got, func(k string, _ float64) bool { return !strings.Contains(k, "name=other,") })
	diff(t, "other tasks", got, map[string]float64{
		"bitville_host_tasks{group=other,name=other,state=running}":         2, // bvbackup, postgres
		"bitville_host_tasks{group=other,name=other,state=uninterruptible}": 1, // kworker
	})
	diff(t, "overflow", promtest.Series(t, f.reg, "bitville_agent_"), map[string]float64{
		"bitville_agent_series_overflow_total{label=process_name}": 1,
		"bitville_agent_series_expired_total{label=process_name}":  0,
	})

	// Everything but systemd is gone: no name is active any more. The
	// series stay for the TTL, with no tasks, then go.
	f.scan("idle", 30*time.Second)
	got = promtest.Series(t, f.reg, "bitville_host_tasks")
	if len(got) != 6 || got["bitville_host_tasks{group=other,name=other,state=running}"] != 0 {
		t.Errorf("within the TTL: got %v; want the 6 task series of 3 names, at 0", got)
	}
	f.scan("idle", 31*time.Second)
	if got := promtest.Series(t, f.reg, "bitville_host_process_cpu_seconds_total"); len(got) != 0 {
		t.Errorf("past the TTL: got %v; want no series", got)
	}
	diff(t, "expired", promtest.Series(t, f.reg, "bitville_agent_"), map[string]float64{
		"bitville_agent_series_overflow_total{label=process_name}": 1,
		"bitville_agent_series_expired_total{label=process_name}":  3,
	})
	if n := len(f.c.scanner.procs); n != 1 {
		t.Errorf("got %d processes remembered; want 1", n)
	}
}

func TestMissingProc(t *testing.T) {
	cfg := testConfig()
	f := newFixture(t, cfg, time.Hour)
	f.scan("nonexistent", 0)
	got := promtest.Series(t, f.reg, "bitville_host_")
	diff(t, "missing /proc", got, map[string]float64{
		"bitville_host_scans_total{}":                      1,
		"bitville_host_scan_errors_total{reason=proc}":     1,
		"bitville_host_scan_errors_total{reason=stat}":     0,
		"bitville_host_scan_errors_total{reason=pressure}": 0,
		"bitville_host_scan_duration_seconds{}":            0,
		"bitville_host_processes{}":                        0,
	})
	// The next good scan is the first: it only records.
	f.scan("scan2", 5*time.Second)
	if v := promtest.Series(t, f.reg, "bitville_host_process_cpu_seconds_total")["bitville_host_process_cpu_seconds_total{group=other,name=bvbackup}"]; v != 0 {
		t.Errorf("got bvbackup %v after the first good scan; want 0", v)
	}
}

// diff reports every series of got and want that differ.
func diff(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: %s missing; want %v", what, k, want[k])
		} else if !near(g, want[k]) {
			t.Errorf("%s: %s = %v; want %v", what, k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s = %v", what, k, got[k])
		}
	}
}

func near(a, b float64) bool {
	d := a - b
	return d < 1e-9 && d > -1e-9
}
