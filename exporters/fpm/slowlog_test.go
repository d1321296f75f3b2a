package fpm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Entries of testdata/fpm-slowlog.log, captured from php-fpm 8.2 with
// request_slowlog_timeout = 1s.
const (
	entryA = "\n[28-Nov-2026 04:23:16]  [pool www] pid 26788\nscript_filename = /tmp/gfpm/sleepy.php\n[0x00007fe9eac13190] sleep() /tmp/gfpm/sleepy.php:14\n[0x00007fe9eac13120] slow_step() /tmp/gfpm/sleepy.php:8\n[0x00007fe9eac130a0] build() /tmp/gfpm/sleepy.php:18\n"
	entryB = "\n[28-Nov-2026 04:23:33]  [pool www] pid 26786\nscript_filename = /tmp/gfpm/includer.php\n[0x00007fe9eac131a0] usleep() /tmp/gfpm/inc.php:3\n[0x00007fe9eac13130] [INCLUDE_OR_EVAL]() /tmp/gfpm/includer.php:3\n[0x00007fe9eac130c0] {closure}() /tmp/gfpm/includer.php:4\n"
)

func entry(pid int, fn string) string {
	return fmt.Sprintf("\n[28-Nov-2026 05:00:00]  [pool www] pid %d\nscript_filename = /srv/x.php\n[0x00007fe9eac13190] %s() /srv/x.php:3\n[0x00007fe9eac13120] main_loop() /srv/x.php:9\n", pid, fn)
}

func TestParseSlowlogCaptured(t *testing.T) {
	entries, err := parseSlowlog(bytes.NewReader(readTestdata(t, "fpm-slowlog.log")))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Fatalf("got %d entries; want 4", len(entries))
	}
	want := []struct {
		pid    int
		script string
		frames int
		top    string
		second SlowlogFrame
	}{
		{26788, "/tmp/gfpm/sleepy.php", 3, "sleep", SlowlogFrame{"slow_step", "/tmp/gfpm/sleepy.php", 8}},
		{26787, "/tmp/gfpm/sleepy.php", 3, "sleep", SlowlogFrame{"slow_step", "/tmp/gfpm/sleepy.php", 8}},
		{26786, "/tmp/gfpm/includer.php", 3, "usleep", SlowlogFrame{"[INCLUDE_OR_EVAL]", "/tmp/gfpm/includer.php", 3}},
		{26788, "/tmp/gfpm/deep.php", 20, "usleep", SlowlogFrame{"recurse", "/tmp/gfpm/deep.php", 9}}, // php-fpm's default trace depth
	}
	for i, w := range want {
		e := entries[i]
		if e.Pool != "www" || e.PID != w.pid || e.Script != w.script || len(e.Frames) != w.frames || e.TopFunction() != w.top || e.Frames[1] != w.second || e.Truncated || e.DumpFailed {
			t.Errorf("entry %d: got %+v; want pid %d, %s, %d frames, top %s, second %+v", i, e, w.pid, w.script, w.frames, w.top, w.second)
		}
	}
	wantTime := time.Date(2026, 11, 28, 4, 23, 16, 0, time.Local)
	if !entries[0].Time.Equal(wantTime) {
		t.Errorf("got time %v; want %v (local time)", entries[0].Time, wantTime)
	}

	api, err := parseSlowlog(bytes.NewReader(readTestdata(t, "fpm-slowlog-api.log")))
	if err != nil || len(api) != 3 || api[2].Pool != "api" || api[2].PID != 27346 || api[2].Frames[2].Function != "build" {
		t.Errorf("got %d api entries %+v, %v; want 3 of pool api", len(api), api, err)
	}
}

func TestParseSlowlogCases(t *testing.T) {
	manyFrames := "[01-Jan-2026 00:00:00]  [pool big] pid 7\nscript_filename = /x.php\n" +
		strings.Repeat("[0x00007f0000000000] f() /x.php:1\n", slowlogMaxFrames+5)
	tests := []struct {
		name      string
		in        string
		entries   int
		invalid   int
		truncated int
		check     func(t *testing.T, e []SlowlogEntry)
	}{
		{name: "empty", in: ""},
		{name: "only blank lines", in: "\n\n\n"},
		{name: "no trailing newline", in: strings.TrimSuffix(entryA, "\n"), entries: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if len(e[0].Frames) != 3 || e[0].Frames[2].Line != 18 {
				t.Errorf("got %+v; want the last frame despite the missing newline", e[0].Frames)
			}
		}},
		{name: "without blank separators", in: strings.TrimPrefix(entryA, "\n") + strings.TrimPrefix(entryB, "\n"), entries: 2},
		{name: "crlf", in: strings.ReplaceAll(entryA, "\n", "\r\n"), entries: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if e[0].Script != "/tmp/gfpm/sleepy.php" || e[0].Frames[0].File != "/tmp/gfpm/sleepy.php" {
				t.Errorf("got %+v", e[0])
			}
		}},
		{name: "dump failed", in: "\n[28-Nov-2026 04:23:16]  [pool www] pid 1\nscript_filename = /x.php\n+++ dump failed\n", entries: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if !e[0].DumpFailed || len(e[0].Frames) != 0 || e[0].TopFunction() != "unknown" {
				t.Errorf("got %+v; want dump_failed, no frames, top function unknown", e[0])
			}
		}},
		{name: "garbage between entries", in: entryA + "hello\n[not a frame]\nscript_filename = /late.php\n" + entryB, entries: 2, invalid: 3},
		{name: "garbage only", in: "a\nb\n[0x1] f() /x.php:1\nscript_filename = /x\n+++ dump failed\n", invalid: 5},
		{name: "too many frames", in: manyFrames, entries: 1, truncated: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if len(e[0].Frames) != slowlogMaxFrames || !e[0].Truncated {
				t.Errorf("got %d frames, truncated %v; want %d, true", len(e[0].Frames), e[0].Truncated, slowlogMaxFrames)
			}
		}},
		{name: "overlong line is cut", in: "\n[28-Nov-2026 04:23:16]  [pool www] pid 1\n[0x00007f0000000000] " + strings.Repeat("f", 3*slowlogMaxLine) + "() /x.php:1\n", entries: 1, invalid: 1},
		{name: "impossible date keeps the entry", in: "[31-Foo-2026 25:61:00]  [pool www] pid 3\n[0x1] f() /x.php:2\n", entries: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if !e[0].Time.IsZero() || e[0].PID != 3 || e[0].TopFunction() != "f" {
				t.Errorf("got %+v; want a zero time and the rest", e[0])
			}
		}},
		{name: "pool name with brackets and spaces", in: "[28-Nov-2026 04:23:16]  [pool my [pool] x] pid 9\n", entries: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if e[0].Pool != "my [pool] x" || e[0].PID != 9 {
				t.Errorf("got %+v", e[0])
			}
		}},
		{name: "file path with colon", in: "[28-Nov-2026 04:23:16]  [pool www] pid 9\n[0x1] run() /srv/a:b/x.php:77\n", entries: 1, check: func(t *testing.T, e []SlowlogEntry) {
			if f := e[0].Frames[0]; f.File != "/srv/a:b/x.php" || f.Line != 77 {
				t.Errorf("got %+v", f)
			}
		}},
		{name: "binary noise", in: "\x00\xff\xfe[\x01]\n\x00\n" + entryA, entries: 1, invalid: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p slowlogParser
			var s lineSplitter
			var got []SlowlogEntry
			emit := func(l []byte) {
				if e, ok := p.line(l); ok {
					got = append(got, e)
				}
			}
			s.feed([]byte(tt.in), emit)
			if l := s.partial(); len(l) > 0 {
				emit(l)
			}
			if e, ok := p.flush(); ok {
				got = append(got, e)
			}
			if len(got) != tt.entries || p.invalid != tt.invalid || p.truncated != tt.truncated {
				t.Fatalf("got %d entries, %d invalid lines, %d truncated; want %d, %d, %d: %+v", len(got), p.invalid, p.truncated, tt.entries, tt.invalid, tt.truncated, got)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
			// The whole-file parser agrees.
			all, err := parseSlowlog(strings.NewReader(tt.in))
			if err != nil || len(all) != tt.entries {
				t.Errorf("parseSlowlog: got %d entries, %v; want %d", len(all), err, tt.entries)
			}
		})
	}
}

// followerT drives a follower with a fake clock.
type followerT struct {
	t   *testing.T
	f   *slowlogFollower
	now time.Time
}

func newFollowerT(t *testing.T, path string) *followerT {
	f := newSlowlogFollower(path)
	t.Cleanup(f.close)
	return &followerT{t: t, f: f, now: t0}
}

// poll advances the clock by d and polls.
func (ft *followerT) poll(d time.Duration) []SlowlogEntry {
	ft.t.Helper()
	ft.now = ft.now.Add(d)
	out, err := ft.f.poll(ft.now)
	if err != nil {
		ft.t.Fatalf("poll: %v", err)
	}
	return out
}

func pids(es []SlowlogEntry) []int {
	out := make([]int, len(es))
	for i, e := range es {
		out[i] = e.PID
	}
	return out
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func wantPIDs(t *testing.T, got []SlowlogEntry, want ...int) {
	t.Helper()
	if fmt.Sprint(pids(got)) != fmt.Sprint(want) {
		t.Errorf("got entries of pids %v; want %v", pids(got), want)
	}
}

func TestFollowerStartsAtEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.log")
	appendFile(t, path, entry(1, "old")+entry(2, "old"))
	ft := newFollowerT(t, path)
	wantPIDs(t, ft.poll(0))
	wantPIDs(t, ft.poll(5*time.Second)) // nothing new, even after a quiet period
	appendFile(t, path, entry(3, "new"))
	// Complete only when the next entry starts or after a quiet period.
	wantPIDs(t, ft.poll(100*time.Millisecond))
	wantPIDs(t, ft.poll(slowlogQuiet), 3)
	appendFile(t, path, entry(4, "a")+entry(5, "b"))
	wantPIDs(t, ft.poll(100*time.Millisecond), 4)
	wantPIDs(t, ft.poll(slowlogQuiet), 5)
	if ft.f.entries != 3 || ft.f.err != nil {
		t.Errorf("got %d entries, err %v; want 3, nil", ft.f.entries, ft.f.err)
	}
}

func TestFollowerPartialWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.log")
	appendFile(t, path, "")
	ft := newFollowerT(t, path)
	ft.poll(0)
	e := entry(7, "stuck")
	cut := strings.Index(e, "stuck") + 2 // inside a frame line
	appendFile(t, path, e[:cut])
	wantPIDs(t, ft.poll(100*time.Millisecond))
	appendFile(t, path, e[cut:])
	got := ft.poll(100 * time.Millisecond)
	wantPIDs(t, got)
	got = ft.poll(slowlogQuiet)
	wantPIDs(t, got, 7)
	if len(got) == 1 && (got[0].TopFunction() != "stuck" || len(got[0].Frames) != 2 || got[0].File != path) {
		t.Errorf("got %+v; want the entry whole", got[0])
	}
}

func TestFollowerRenameRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slow.log")
	appendFile(t, path, "")
	ft := newFollowerT(t, path)
	ft.poll(0)
	appendFile(t, path, entry(1, "a"))
	// logrotate renames the file; php-fpm still finishes an entry in the
	// old file, then writes the next one to a new file at the path.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path+".1", entry(2, "b"))
	appendFile(t, path, entry(3, "c"))
	wantPIDs(t, ft.poll(100*time.Millisecond), 1, 2) // the old file drained, its last entry complete
	wantPIDs(t, ft.poll(slowlogQuiet), 3)
	if ft.f.rotated != 1 {
		t.Errorf("got %d rotations; want 1", ft.f.rotated)
	}
	// Renamed with nothing new created: no error while the path is
	// missing, and a later file is read from its start.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	wantPIDs(t, ft.poll(100*time.Millisecond))
	wantPIDs(t, ft.poll(100*time.Millisecond))
	appendFile(t, path, entry(4, "d"))
	wantPIDs(t, ft.poll(100*time.Millisecond))
	wantPIDs(t, ft.poll(slowlogQuiet), 4)
	if ft.f.rotated != 2 {
		t.Errorf("got %d rotations; want 2", ft.f.rotated)
	}
	// Deleted and recreated.
	os.Remove(path)
	appendFile(t, path, entry(5, "e")+entry(6, "f"))
	wantPIDs(t, ft.poll(100*time.Millisecond), 5)
	wantPIDs(t, ft.poll(slowlogQuiet), 6)
}

func TestFollowerCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.log")
	appendFile(t, path, entry(1, "before")+entry(2, "before"))
	ft := newFollowerT(t, path)
	ft.poll(0)
	appendFile(t, path, entry(3, "a"))
	wantPIDs(t, ft.poll(100*time.Millisecond))
	// logrotate copytruncate: the file is cut to 0 and php-fpm appends.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, entry(4, "b"))
	wantPIDs(t, ft.poll(100*time.Millisecond), 3) // the entry cut short by the truncation is complete
	wantPIDs(t, ft.poll(slowlogQuiet), 4)
	if ft.f.rotated != 1 || ft.f.offset != int64(len(entry(4, "b"))) {
		t.Errorf("got %d rotations, offset %d; want 1, %d", ft.f.rotated, ft.f.offset, len(entry(4, "b")))
	}
}

func TestFollowerMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.log")
	f := newSlowlogFollower(path)
	t.Cleanup(f.close)
	_, err := f.poll(t0)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("got %v; want a does-not-exist error", err)
	}
	if _, err := f.poll(t0.Add(time.Second)); err != nil {
		t.Errorf("got %v on the second poll; want the same error reported once", err)
	}
	if f.err == nil {
		t.Error("the error is not kept for the API")
	}
	// Created after the agent started: read from the start.
	appendFile(t, path, entry(9, "x"))
	out, err := f.poll(t0.Add(3 * time.Second))
	if err != nil || len(out) != 0 {
		t.Errorf("got %+v, %v; want nothing before the entry is complete", out, err)
	}
	out, err = f.poll(t0.Add(3*time.Second + slowlogQuiet))
	if err != nil || len(out) != 1 || out[0].PID != 9 || f.err != nil {
		t.Errorf("got %+v, %v (kept %v); want the entry of pid 9", out, err, f.err)
	}
}

func TestFollowerGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.log")
	appendFile(t, path, "")
	ft := newFollowerT(t, path)
	ft.poll(0)
	// 3 MiB without a newline, then a real entry.
	appendFile(t, path, strings.Repeat("x", 3<<20)+entry(5, "real"))
	var got []SlowlogEntry
	for i := 0; i < 10; i++ {
		got = append(got, ft.poll(100*time.Millisecond)...)
		if cap(ft.f.lines.buf) > 2*slowlogMaxLine {
			t.Fatalf("line buffer grew to %d bytes; want at most about %d", cap(ft.f.lines.buf), slowlogMaxLine)
		}
	}
	got = append(got, ft.poll(slowlogQuiet)...)
	wantPIDs(t, got, 5)
	if ft.f.parser.invalid != 1 {
		t.Errorf("got %d invalid lines; want 1", ft.f.parser.invalid)
	}
}

func TestSlowlogMetrics(t *testing.T) {
	m, reg, _ := newTestMonitor(t, func(o *Options) { o.Config.Slowlogs = []string{"/nonexistent/slow.log"} })
	s := m.slow
	for i := 0; i < slowlogMaxFunctions+5; i++ {
		e := SlowlogEntry{Pool: "www", PID: i, Frames: []SlowlogFrame{{Function: fmt.Sprintf("fn%d", i)}}}
		s.observe(&e, t0)
	}
	e := SlowlogEntry{Pool: "www", PID: 1, Frames: []SlowlogFrame{{Function: "fn0"}}}
	s.observe(&e, t0.Add(time.Hour)) // fn0 again, later
	dump := SlowlogEntry{Pool: "api", DumpFailed: true}
	s.observe(&dump, t0.Add(time.Hour))
	got := series(t, reg, "bitville_")
	want := map[string]float64{
		`bitville_fpm_slowlog_entries_total{pool=www}`:                 slowlogMaxFunctions + 6,
		`bitville_fpm_slowlog_entries_total{pool=api}`:                 1,
		`bitville_fpm_slowlog_frames_total{function=fn0,pool=www}`:     2,
		`bitville_fpm_slowlog_frames_total{function=other,pool=www}`:   5,
		`bitville_fpm_slowlog_frames_total{function=unknown,pool=api}`: 1,
		`bitville_agent_series_overflow_total{label=slowlog_function}`: 5,
		`bitville_agent_series_overflow_total{label=slowlog_pool}`:     0,
		`bitville_fpm_slowlog_errors_total{reason=invalid_line}`:       0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: got %v (present %v); want %v", k, g, ok, v)
		}
	}
	// Idle function series expire; the recent ones stay.
	s.expire(t0.Add(time.Minute))
	got = series(t, reg, "bitville_")
	if _, ok := got[`bitville_fpm_slowlog_frames_total{function=fn1,pool=www}`]; ok {
		t.Error("fn1 did not expire")
	}
	if got[`bitville_fpm_slowlog_frames_total{function=fn0,pool=www}`] != 2 || got[`bitville_agent_series_expired_total{label=slowlog_function}`] != slowlogMaxFunctions {
		t.Errorf("got fn0 %v, expired %v; want fn0 kept and %d expired (199 functions and other)", got[`bitville_fpm_slowlog_frames_total{function=fn0,pool=www}`], got[`bitville_agent_series_expired_total{label=slowlog_function}`], slowlogMaxFunctions)
	}
	// Pools are bounded too.
	for i := 0; i < slowlogMaxPools+3; i++ {
		e := SlowlogEntry{Pool: fmt.Sprintf("p%d", i)}
		s.observe(&e, t0)
	}
	got = series(t, reg, "bitville_")
	if got[`bitville_agent_series_overflow_total{label=slowlog_pool}`] != 5 || got[`bitville_fpm_slowlog_entries_total{pool=other}`] != 5 {
		t.Errorf("got pool overflow %v, other %v; want 5 and 5 (www and api hold two of %d)", got[`bitville_agent_series_overflow_total{label=slowlog_pool}`], got[`bitville_fpm_slowlog_entries_total{pool=other}`], slowlogMaxPools)
	}
}

func TestSlowlogEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slow.log")
	appendFile(t, path, "")
	clk := &clock{now: t0}
	m, reg, p := newTestMonitor(t, func(o *Options) {
		o.Config.Slowlogs = []string{path}
		o.Now = clk.Now
	})
	f := newSlowlogFollower(path)
	t.Cleanup(f.close)
	m.pollSlowlog(f, clk.Now())
	// The PHP agent reported the request of worker 26786.
	p.start(Request{PID: 26786, Pool: "www", Started: t0.Add(-2 * time.Second), Detail: "req-9"})
	appendFile(t, path, entryA+entryB+"not a slowlog line\n")
	clk.Add(slowlogQuiet)
	m.pollSlowlog(f, clk.Now()) // entry A, completed by B
	clk.Add(slowlogQuiet)
	m.pollSlowlog(f, clk.Now()) // entry B, after a quiet period
	ev := p.Events(EventSlowlog)
	if len(ev) != 2 {
		t.Fatalf("got %d events; want 2: %+v", len(ev), ev)
	}
	b, old := ev[0], ev[1] // newest first
	if old.Kind != EventSlowlog || old.Slowlog == nil || old.Slowlog.PID != 26788 || old.Request.Pool != "www" || old.Request.PID != 26788 || old.Seconds != 0 {
		t.Errorf("got event %+v", old)
	}
	if b.Slowlog == nil || b.Request.Detail != "req-9" || b.Seconds != 4 {
		t.Errorf("got event %+v; want it enriched with the in-flight request (running 4s)", b)
	}
	if !old.Time.Equal(time.Date(2026, 11, 28, 4, 23, 16, 0, time.Local)) {
		t.Errorf("got event time %v; want the entry's", old.Time)
	}
	got := series(t, reg, "bitville_")
	if got[`bitville_fpm_slowlog_entries_total{pool=www}`] != 2 || got[`bitville_fpm_slowlog_frames_total{function=sleep,pool=www}`] != 1 ||
		got[`bitville_fpm_slowlog_frames_total{function=usleep,pool=www}`] != 1 || got[`bitville_fpm_slowlog_errors_total{reason=invalid_line}`] != 1 {
		t.Errorf("got %v", got)
	}
}

func TestSlowlogOpenError(t *testing.T) {
	dir := t.TempDir() // a directory opens but cannot be read as a file
	m, reg, _ := newTestMonitor(t, func(o *Options) { o.Config.Slowlogs = []string{dir} })
	f := newSlowlogFollower(dir)
	t.Cleanup(f.close)
	for i := 0; i < 3; i++ {
		m.pollSlowlog(f, t0.Add(time.Duration(i)*time.Second))
	}
	if v := series(t, reg, "bitville_fpm_slowlog_errors_total")[`bitville_fpm_slowlog_errors_total{reason=open}`]; v != 1 {
		t.Errorf("got %v open errors for three polls of the same problem; want 1", v)
	}
	if f.err == nil || !strings.Contains(f.err.Error(), "cannot read slowlog") {
		t.Errorf("got kept error %v; want cannot read slowlog", f.err)
	}
}

// FuzzSlowlog checks that no input makes the parser panic or break its
// bounds.
func FuzzSlowlog(f *testing.F) {
	f.Add([]byte(entryA + entryB))
	f.Add(readTestdata(f, "fpm-slowlog.log"))
	f.Add([]byte("[28-Nov-2026 04:23:16]  [pool ] pid 99999999999999999999\n[0x] () :\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseSlowlog(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if len(e.Frames) > slowlogMaxFrames {
				t.Fatalf("entry with %d frames", len(e.Frames))
			}
			_ = e.TopFunction()
		}
	})
}
