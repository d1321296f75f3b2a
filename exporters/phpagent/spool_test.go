package phpagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/units"
)

// spoolName is a spool file name for a message written at t.
func spoolName(t time.Time, pid int, tag string) string {
	return fmt.Sprintf("%019d-%d-%s.json", t.UnixNano(), pid, tag)
}

// writeSpool writes a spool file the way the PHP agent does: under a
// .tmp name, then renamed, so a running daemon never reads half of it.
func writeSpool(t *testing.T, dir, name, body string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path+".tmp", []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func spooledEnd(id string, pid int, started float64) string {
	return fmt.Sprintf(`{"v":1,"type":"end","id":%q,"pid":%d,"project":"shop","ts":%.3f,"method":"GET","endpoint":"GET /spooled","started":%.3f,"status":200,"wall":0.1}`,
		id, pid, started+0.1, started)
}

func TestTakeSpool(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	at := func(i int) time.Time { return now.Add(-time.Minute + time.Duration(i)*time.Millisecond) }
	writeSpool(t, dir, spoolName(at(1), 7, "aaaaaaaa"), spooledEnd("a", 7, 1764294512.1))
	writeSpool(t, dir, spoolName(at(2), 7, "bbbbbbbb"), spooledEnd("b", 7, 1764294512.2))
	writeSpool(t, dir, spoolName(at(3), 7, "cccccccc"), `{"v":1,"type":"start","id":"c","pid":7,"project":"shop","ts":1764294512.3,"method":"GET","endpoint":"GET /spooled","started":1764294512.3}`)
	writeSpool(t, dir, spoolName(at(4), 7, "dddddddd"), `{"v":1,"type":"end"`)
	writeSpool(t, dir, spoolName(at(5), 7, "eeeeeeee"), `{"v":1,"pad":"`+strings.Repeat("x", 70000)+`"}`)
	writeSpool(t, dir, spoolName(at(6), 7, "ffffffff")+".tmp", spooledEnd("f", 7, 1764294512.6)) // still being written
	writeSpool(t, dir, "notes.txt", "not a spool file")

	a, reg := newTestAgent(t, func(c *Config) { c.SpoolDir = dir })
	st, err := a.TakeSpool()
	if err != nil {
		t.Fatal(err)
	}
	if want := (SpoolStats{Replayed: 2, Skipped: 1, Invalid: 2}); st != want {
		t.Errorf("got %+v; want %+v", st, want)
	}
	if got := series(t, reg, "bitville_php_requests_total")[`bitville_php_requests_total{endpoint=GET /spooled,method=GET,project=shop,status=2xx}`]; got != 2 {
		t.Errorf("got %v requests from the spool; want 2", got)
	}
	if got := a.inflight.Len(); got != 0 {
		t.Errorf("got %d in flight; want 0 (a spooled start is not replayed)", got)
	}
	if got := series(t, reg, "bitville_agent_spool_files_total")[`bitville_agent_spool_files_total{result=invalid}`]; got != 2 {
		t.Errorf("got %v invalid spool files counted; want 2", got)
	}
	left, _ := os.ReadDir(dir)
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if len(names) != 2 || !strings.HasSuffix(names[0], ".json.tmp") || names[1] != "notes.txt" {
		t.Errorf("got %q left; want only the .tmp file and the unrelated file", names)
	}

	// A second pass finds nothing; a missing dir is not an error.
	if st, err := a.TakeSpool(); err != nil || st != (SpoolStats{}) {
		t.Errorf("got %+v, %v on the second pass; want nothing", st, err)
	}
	a2, _ := newTestAgent(t, func(c *Config) { c.SpoolDir = filepath.Join(dir, "absent") })
	if _, err := a2.TakeSpool(); err != nil {
		t.Errorf("got %v for a missing dir; want nil", err)
	}
}

// The spool's bounds drop the oldest files, count them, and take in the rest.
func TestTakeSpoolBounds(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	writeSpool(t, dir, spoolName(now.Add(-2*time.Hour), 9, "00000000"), spooledEnd("old", 9, 1764294500))
	body := spooledEnd("r0", 9, 1764294512)
	for i := range 10 {
		writeSpool(t, dir, spoolName(now.Add(time.Duration(i)*time.Millisecond), 9, fmt.Sprintf("%08x", i)), strings.Replace(body, `"id":"r0"`, fmt.Sprintf(`"id":"r%d"`, i), 1))
	}
	size := int64(len(body))
	a, reg := newTestAgent(t, func(c *Config) {
		c.SpoolDir = dir
		c.SpoolMaxAge = time.Hour
		c.SpoolMaxBytes = 64 << 10
	})
	a.cfg.SpoolMaxBytes = units.Base2Bytes(6 * size) // below what Validate accepts, to keep the test small
	st, err := a.TakeSpool()
	if err != nil {
		t.Fatal(err)
	}
	if wantSt := (SpoolStats{Replayed: 6, Expired: 1, Evicted: 4}); st != wantSt {
		t.Errorf("got %+v; want %+v", st, wantSt)
	}
	got := series(t, reg, "bitville_agent_spool_files_total")
	for result, n := range map[string]float64{"expired": 1, "evicted": 4, "replayed": 6} {
		if v := got[`bitville_agent_spool_files_total{result=`+result+`}`]; v != n {
			t.Errorf("spool files %s: got %v; want %v", result, v, n)
		}
	}
	// The newest six are those aggregated.
	if v := series(t, reg, "bitville_php_requests_total")[`bitville_php_requests_total{endpoint=GET /spooled,method=GET,project=shop,status=2xx}`]; v != 6 {
		t.Errorf("got %v requests; want the 6 newest", v)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("got %d files left; want none", len(left))
	}
}

// The running daemon takes spooled messages in without a restart, and an
// end taken from the spool closes its in-flight request without counting
// it as abandoned when the worker has already started the next one.
func TestSpoolTakenInWhileRunning(t *testing.T) {
	dir := t.TempDir()
	a, reg := newTestAgent(t, func(c *Config) {
		c.SpoolDir = dir
		c.SpoolInterval = 20 * time.Millisecond
		c.SweepInterval = 10 * time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.RunBackground(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	var rs readerState
	start := func(id string, started float64) {
		a.Handle([]byte(fmt.Sprintf(`{"v":1,"type":"start","id":%q,"pid":11,"project":"shop","ts":%.3f,"method":"GET","endpoint":"GET /spooled","started":%.3f}`, id, started, started)), &rs)
	}
	start("first", 1764294512.1)
	start("second", 1764294513.1) // the first's end went to the spool
	writeSpool(t, dir, spoolName(time.Now(), 11, "12345678"), spooledEnd("first", 11, 1764294512.1))

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if series(t, reg, "bitville_php_requests_total")[`bitville_php_requests_total{endpoint=GET /spooled,method=GET,project=shop,status=2xx}`] == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := series(t, reg, "bitville_")
	if v := got[`bitville_php_requests_total{endpoint=GET /spooled,method=GET,project=shop,status=2xx}`]; v != 1 {
		t.Fatalf("got %v requests; want the spooled one taken in while running", v)
	}
	if v := got[`bitville_agent_unmatched_ends_total{}`]; v != 0 {
		t.Errorf("got %v unmatched ends; want 0: the spooled end matches its superseded request", v)
	}
	if v := got[`bitville_php_requests_abandoned_total{endpoint=GET /spooled,project=shop}`]; v != 0 {
		t.Errorf("got %v abandoned; want 0", v)
	}
	if n := a.inflight.Len(); n != 1 {
		t.Errorf("got %d in flight; want 1 (the second request)", n)
	}
}

// The daemon and the PHP agent derive the same spool directory from the
// socket path: both are tested against these examples.
func TestDerivedSpoolDir(t *testing.T) {
	var limits struct {
		Spool struct {
			MaxBytes   int64 `json:"max_bytes"`
			DerivedDir []struct {
				Socket, Dir string
			} `json:"derived_dir"`
		} `json:"spool"`
	}
	readSharedLimits(t, &limits)
	if len(limits.Spool.DerivedDir) == 0 {
		t.Fatal("limits.json has no spool.derived_dir examples")
	}
	for _, ex := range limits.Spool.DerivedDir {
		if got := DerivedSpoolDir(ex.Socket); got != ex.Dir {
			t.Errorf("DerivedSpoolDir(%q) = %q; want %q", ex.Socket, got, ex.Dir)
		}
	}
	if got := int64(DefaultConfig().SpoolMaxBytes); got != limits.Spool.MaxBytes {
		t.Errorf("agent.spool-max-bytes default %d; want the PHP agent's spool_max_bytes default %d", got, limits.Spool.MaxBytes)
	}
	for _, tc := range []struct{ dir, want string }{
		{"", "/run/bitville-apm/agent.spool"},
		{SpoolOff, ""},
		{"/var/spool/x", "/var/spool/x"},
	} {
		c := DefaultConfig()
		c.SpoolDir = tc.dir
		if got := c.SpoolPath(); got != tc.want {
			t.Errorf("SpoolPath with agent.spool-dir=%q: got %q; want %q", tc.dir, got, tc.want)
		}
	}
}

func TestPrepareSpoolDir(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Socket = filepath.Join(t.TempDir(), "agent.sock")
	if err := PrepareSpoolDir(cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(filepath.Dir(cfg.Socket), "agent.spool"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode()&(os.ModePerm|os.ModeSetgid), os.ModeSetgid|0o770; got != want {
		t.Errorf("spool dir mode %v; want %v", got, want)
	}
	cfg.SpoolDir = SpoolOff
	cfg.Socket = filepath.Join(t.TempDir(), "other.sock")
	if err := PrepareSpoolDir(cfg); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(cfg.Socket)); len(entries) != 0 {
		t.Errorf("the spool is off but %d entries were created", len(entries))
	}
}

// What the PHP agents evicted from a full spool is counted from their size
// file, across a reset of the file.
func TestPHPSpoolEvictions(t *testing.T) {
	dir := t.TempDir()
	a, reg := newTestAgent(t, func(c *Config) { c.SpoolDir = dir })
	for _, tc := range []struct {
		file string
		want float64
	}{
		{"", 0},
		{"1200 1764294512\n", 0}, // no eviction count: nothing to add
		{"1200 1764294512 5\n", 5},
		{"1300 1764294513 7\n", 7},
		{"garbage", 7},
		{"100 1764294514 2\n", 9}, // the file was made anew
	} {
		if tc.file != "" {
			writeSpool(t, dir, spoolSizeFile, tc.file)
		}
		if _, err := a.TakeSpool(); err != nil {
			t.Fatal(err)
		}
		if got := series(t, reg, "bitville_agent_php_spool_evicted_total")["bitville_agent_php_spool_evicted_total{}"]; got != tc.want {
			t.Errorf("after %q: got %v evicted; want %v", tc.file, got, tc.want)
		}
	}
}
