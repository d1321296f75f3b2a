package phpagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bitville/bitville-apm/internal/labelset"
)

// The slowlog follower: it tails php-fpm's slowlog files, parses each entry
// (php-fpm writes one when a request runs past request_slowlog_timeout: the
// pool, the worker pid, the script and the PHP stack, innermost frame
// first), counts entries by pool and by top frame function, and keeps each
// entry as an event for the raw-trace sink.

// EventFPMSlowlog is the kind of the event for one slowlog entry.
const EventFPMSlowlog = "fpm_slowlog"

// Bounds on what one entry may hold, so garbage in a slowlog cannot make
// the agent hold unbounded memory. php-fpm's own default depth
// (request_slowlog_trace_depth) is 20 frames.
const (
	slowlogMaxLine       = 8 << 10  // longer lines are cut (and then do not parse)
	slowlogMaxFrames     = 100      // frames kept per entry; the rest are dropped and the entry marked truncated
	slowlogMaxEntryBytes = 64 << 10 // bytes of frames kept per entry, likewise
	slowlogMaxPools      = 64       // pool label values, then "other"
	slowlogMaxFunctions  = 200      // function label values per pool, then "other"
	slowlogReadPerPoll   = 1 << 20  // bytes read per poll; the rest waits for the next
)

// Follower timing. An entry is complete when the next entry begins (php-fpm
// starts each with a blank line) or when nothing was written for
// slowlogQuiet: php-fpm writes a whole entry at once, so a pause means the
// last entry is done.
const (
	slowlogPollInterval = 250 * time.Millisecond
	slowlogQuiet        = time.Second
)

// SlowlogEntry is one entry of a php-fpm slowlog.
type SlowlogEntry struct {
	Time       time.Time      `json:"time"` // from the entry header, read in the agent's local time zone
	Pool       string         `json:"pool"`
	PID        int            `json:"pid"`
	Script     string         `json:"script,omitempty"` // script_filename
	Frames     []SlowlogFrame `json:"frames"`           // innermost first
	DumpFailed bool           `json:"dump_failed,omitempty"`
	Truncated  bool           `json:"truncated,omitempty"` // frames past the agent's bounds were dropped
	File       string         `json:"file,omitempty"`      // the slowlog it came from
}

// SlowlogFrame is one line of an entry's stack: a function and the file
// and line it was called from.
type SlowlogFrame struct {
	Function string `json:"function"` // as php-fpm prints it: "sleep", "{closure}", "[INCLUDE_OR_EVAL]"
	File     string `json:"file"`
	Line     int    `json:"line"`
}

// TopFunction is the innermost frame's function, or "unknown" without
// frames (php-fpm could not read the stack).
func (e *SlowlogEntry) TopFunction() string {
	if len(e.Frames) == 0 || e.Frames[0].Function == "" {
		return "unknown"
	}
	return e.Frames[0].Function
}

// Slowlog line formats (sapi/fpm/fpm/fpm_php_trace.c):
//
//	[28-Nov-2026 10:00:00]  [pool www] pid 1234
//	script_filename = /var/www/index.php
//	[0x00007f0c1a213190] sleep() /var/www/index.php:14
//	+++ dump failed
var (
	slowlogHeader = regexp.MustCompile(`^\[(\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}:\d{2})\]\s+\[pool (.*)\] pid (\d+)$`)
	slowlogFrame  = regexp.MustCompile(`^\[0x[0-9a-fA-F]+\] (.*?)\(\) (.*):(\d+)$`)
)

const (
	slowlogTimeLayout = "02-Jan-2006 15:04:05"
	slowlogScript     = "script_filename = "
	slowlogDumpFailed = "+++ dump failed"
)

// slowlogParser turns slowlog lines into entries, one line at a time, so
// that a follower can feed it what has been written so far. The zero value
// is ready; loc defaults to time.Local.
type slowlogParser struct {
	loc       *time.Location
	cur       *SlowlogEntry
	curBytes  int
	invalid   int // lines that fit no entry
	truncated int // entries that lost frames to the bounds
}

// line consumes one line (without its newline) and returns the entry it
// completed, if any.
func (p *slowlogParser) line(l []byte) (SlowlogEntry, bool) {
	l = bytes.TrimSuffix(l, []byte("\r"))
	if len(l) == 0 {
		return p.flush()
	}
	if l[0] == '[' {
		if m := slowlogHeader.FindSubmatch(l); m != nil {
			done, ok := p.flush()
			p.start(m)
			return done, ok
		}
		if m := slowlogFrame.FindSubmatch(l); m != nil && p.cur != nil {
			p.frame(m, len(l))
			return SlowlogEntry{}, false
		}
	}
	switch {
	case p.cur != nil && bytes.HasPrefix(l, []byte(slowlogScript)) && p.cur.Script == "" && len(p.cur.Frames) == 0:
		p.cur.Script = string(l[len(slowlogScript):])
	case p.cur != nil && string(l) == slowlogDumpFailed:
		p.cur.DumpFailed = true
	default:
		p.invalid++
	}
	return SlowlogEntry{}, false
}

func (p *slowlogParser) start(m [][]byte) {
	loc := p.loc
	if loc == nil {
		loc = time.Local
	}
	e := &SlowlogEntry{Pool: string(m[2]), Frames: []SlowlogFrame{}}
	e.Time, _ = time.ParseInLocation(slowlogTimeLayout, string(m[1]), loc) // the pattern admits only valid-looking dates; a zero time is kept for the rest
	e.PID, _ = strconv.Atoi(string(m[3]))
	p.cur, p.curBytes = e, 0
}

func (p *slowlogParser) frame(m [][]byte, n int) {
	e := p.cur
	if len(e.Frames) >= slowlogMaxFrames || p.curBytes+n > slowlogMaxEntryBytes {
		if !e.Truncated {
			e.Truncated = true
			p.truncated++
		}
		return
	}
	line, _ := strconv.Atoi(string(m[3]))
	e.Frames = append(e.Frames, SlowlogFrame{Function: string(m[1]), File: string(m[2]), Line: line})
	p.curBytes += n
}

// flush completes the open entry, if any.
func (p *slowlogParser) flush() (SlowlogEntry, bool) {
	if p.cur == nil {
		return SlowlogEntry{}, false
	}
	e := *p.cur
	p.cur = nil
	return e, true
}

// lineSplitter cuts a byte stream into lines of at most slowlogMaxLine
// bytes; the rest of a longer line is dropped. It holds at most one partial
// line.
type lineSplitter struct {
	buf []byte
}

func (s *lineSplitter) feed(b []byte, emit func([]byte)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if room := slowlogMaxLine - len(s.buf); room > 0 {
			s.buf = append(s.buf, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			return
		}
		emit(s.buf)
		s.buf = s.buf[:0]
		b = b[i+1:]
	}
}

// partial returns the unterminated line held, and forgets it.
func (s *lineSplitter) partial() []byte {
	l := s.buf
	s.buf = nil
	return l
}

// parseSlowlog parses a whole slowlog. Lines that fit no entry are skipped
// (counted in the parser, not errors); the error is the reader's.
func parseSlowlog(r io.Reader) ([]SlowlogEntry, error) {
	var (
		p   slowlogParser
		s   lineSplitter
		out []SlowlogEntry
	)
	emit := func(l []byte) {
		if e, ok := p.line(l); ok {
			out = append(out, e)
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		s.feed(buf[:n], emit)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("cannot read slowlog: %w", err)
		}
	}
	if l := s.partial(); len(l) > 0 {
		emit(l)
	}
	if e, ok := p.flush(); ok {
		out = append(out, e)
	}
	return out, nil
}

// slowlogFollower tails one slowlog file through rotation. It is driven by
// poll and not safe for concurrent use.
//
// At the agent's start it begins at the end of an existing file: entries
// written before are not replayed. A file that appears later (created by
// php-fpm, or after a rotation) is read from its start. Rotation by rename
// (the path now names another file, or none) drains the old file to its
// end first; copytruncate (the file shrank below the read position) starts
// again from offset 0.
type slowlogFollower struct {
	path   string
	parser slowlogParser
	lines  lineSplitter

	f       *os.File
	dev     uint64
	ino     uint64
	offset  int64
	atStart bool // no open attempted yet: an existing file is read from its end
	opened  bool // a file was opened once
	last    time.Time
	buf     []byte

	err     error // the latest open/read error, nil after a success
	entries uint64
	rotated uint64 // renames and truncations seen
}

func newSlowlogFollower(path string) *slowlogFollower {
	return &slowlogFollower{path: path, atStart: true, buf: make([]byte, 32<<10)}
}

// poll reads what was written since the last poll and returns the entries
// completed by it, or by a quiet period ending at now. newErr is an
// open/read error that differs from the previous poll's (a file missing
// for an hour is reported once).
func (f *slowlogFollower) poll(now time.Time) (out []SlowlogEntry, newErr error) {
	emit := func(l []byte) {
		if e, ok := f.parser.line(l); ok {
			out = append(out, e)
		}
	}
	// finish ends the current file: its unterminated last line and open
	// entry are complete now, since nothing more will be appended.
	finish := func() {
		if l := f.lines.partial(); len(l) > 0 {
			emit(l)
		}
		if e, ok := f.parser.flush(); ok {
			out = append(out, e)
		}
	}
	setErr := func(err error) {
		if err != nil && (f.err == nil || f.err.Error() != err.Error()) {
			newErr = err
		}
		f.err = err
	}

	for attempt := 0; attempt < 2; attempt++ {
		if f.f == nil {
			if err := f.open(); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					// Normal between a rename and php-fpm's next entry; an
					// error only while the file was never there.
					err = fmt.Errorf("slowlog %s does not exist (yet): %w", f.path, err)
					if f.opened {
						f.err = err
						break
					}
				}
				setErr(err)
				break
			}
			f.opened = true
		}
		fi, err := f.f.Stat()
		if err != nil {
			setErr(fmt.Errorf("cannot stat slowlog %s: %w", f.path, err))
			f.close()
			break
		}
		if fi.Size() < f.offset { // copytruncate
			finish()
			if _, err := f.f.Seek(0, io.SeekStart); err != nil {
				setErr(fmt.Errorf("cannot rewind truncated slowlog %s: %w", f.path, err))
				f.close()
				break
			}
			f.offset = 0
			f.rotated++
		}
		eof, err := f.read(emit, now)
		if err != nil {
			setErr(fmt.Errorf("cannot read slowlog %s: %w", f.path, err))
			f.close()
			break
		}
		setErr(nil)
		if !eof {
			break // more next poll
		}
		if f.samePath() {
			break
		}
		// Renamed away (or deleted): the old file is drained, finish its
		// last entry and go on with whatever the path names now.
		finish()
		f.close()
		f.rotated++
	}
	if f.parser.cur != nil && now.Sub(f.last) >= slowlogQuiet {
		if e, ok := f.parser.flush(); ok {
			out = append(out, e)
		}
	}
	for i := range out {
		out[i].File = f.path
	}
	f.entries += uint64(len(out))
	return out, newErr
}

func (f *slowlogFollower) open() error {
	file, err := os.Open(f.path)
	atStart := f.atStart
	f.atStart = false
	if err != nil {
		return err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(file.Fd()), &st); err != nil {
		file.Close()
		return fmt.Errorf("cannot stat slowlog %s: %w", f.path, err)
	}
	f.offset = 0
	if atStart {
		off, err := file.Seek(0, io.SeekEnd)
		if err != nil {
			file.Close()
			return fmt.Errorf("cannot seek to the end of slowlog %s: %w", f.path, err)
		}
		f.offset = off
	}
	f.f, f.dev, f.ino = file, uint64(st.Dev), st.Ino
	return nil
}

func (f *slowlogFollower) close() {
	if f.f != nil {
		f.f.Close()
		f.f = nil
	}
}

// read reads up to slowlogReadPerPoll bytes and reports whether it reached
// the end of the file.
func (f *slowlogFollower) read(emit func([]byte), now time.Time) (eof bool, err error) {
	total := 0
	for total < slowlogReadPerPoll {
		n, err := f.f.Read(f.buf)
		if n > 0 {
			f.offset += int64(n)
			total += n
			f.last = now
			f.lines.feed(f.buf[:n], emit)
		}
		if errors.Is(err, io.EOF) || (n == 0 && err == nil) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// samePath says whether the path still names the open file.
func (f *slowlogFollower) samePath() bool {
	var st syscall.Stat_t
	if err := syscall.Stat(f.path, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == f.dev && st.Ino == f.ino
}

// Reasons of bitville_fpm_slowlog_errors_total.
const (
	slowlogErrOpen      = "open"         // the file cannot be opened, stat'ed or read
	slowlogErrInvalid   = "invalid_line" // a line that fits no entry
	slowlogErrTruncated = "truncated"    // an entry lost frames to the agent's bounds
)

// slowlogMetrics counts slowlog entries by pool and top frame function,
// within bounds. Safe for concurrent use.
type slowlogMetrics struct {
	self    *SelfMetrics
	entries *prometheus.CounterVec // pool
	frames  *prometheus.CounterVec // pool, function
	errors  *prometheus.CounterVec // reason

	// fnOverflow and fnExpired count function label values past the
	// limit and idle ones removed.
	fnOverflow, fnExpired labelset.Counter

	mu    sync.Mutex
	pools *labelset.Set[string, *slowlogPool] // guarded by mu
}

// slowlogPool is one pool label value: its entry counter and its function
// label values.
type slowlogPool struct {
	entries   prometheus.Counter
	functions *labelset.Set[string, prometheus.Counter]
}

// newSlowlogMetrics creates the slowlog counters. With follow (slowlogs are
// followed) the self-metric series of the slowlog labels start at zero; an
// agent without slowlogs shows none.
func newSlowlogMetrics(self *SelfMetrics, follow bool) *slowlogMetrics {
	s := &slowlogMetrics{
		self: self,
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_slowlog_entries_total",
			Help: "Entries php-fpm wrote to its slowlog (requests past request_slowlog_timeout), by pool.",
		}, []string{"pool"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_slowlog_frames_total",
			Help: "Slowlog entries by their innermost frame's function: what slow requests were doing.",
		}, []string{"pool", "function"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bitville_fpm_slowlog_errors_total",
			Help: "Slowlog problems, by reason: open (cannot open or read the file), invalid_line, truncated (entry past the agent's bounds).",
		}, []string{"reason"}),
	}
	s.fnOverflow = self.overflow.WithLabelValues("slowlog_function")
	if follow {
		s.fnExpired = self.expired.WithLabelValues("slowlog_function")
		self.expired.WithLabelValues("slowlog_pool")
	}
	// Pools are never expired: a pool is a piece of configuration, and its
	// entry counter is created at zero as soon as a status page names it.
	s.pools = labelset.New(labelset.Options[string, *slowlogPool]{
		Limit:      slowlogMaxPools,
		Overflow:   labelset.Other,
		New:        s.newPool,
		Overflowed: self.overflow.WithLabelValues("slowlog_pool"),
	})
	for _, r := range []string{slowlogErrOpen, slowlogErrInvalid, slowlogErrTruncated} {
		s.errors.WithLabelValues(r)
	}
	return s
}

// newPool creates the entry counter of a pool label value, at zero, and
// its bounded function dimension.
func (s *slowlogMetrics) newPool(pool string) *slowlogPool {
	return &slowlogPool{
		entries: s.entries.WithLabelValues(pool),
		functions: labelset.New(labelset.Options[string, prometheus.Counter]{
			Limit:      slowlogMaxFunctions,
			Overflow:   labelset.Other,
			New:        func(fn string) prometheus.Counter { return s.frames.WithLabelValues(pool, fn) },
			Delete:     func(fn string, _ prometheus.Counter) { s.frames.DeleteLabelValues(pool, fn) },
			Overflowed: s.fnOverflow,
			Expired:    s.fnExpired,
		}),
	}
}

// describe and collect make the slowlog counters part of the fpm
// collector.
func (s *slowlogMetrics) describe(ch chan<- *prometheus.Desc) {
	s.entries.Describe(ch)
	s.frames.Describe(ch)
	s.errors.Describe(ch)
}

func (s *slowlogMetrics) collect(ch chan<- prometheus.Metric) {
	s.entries.Collect(ch)
	s.frames.Collect(ch)
	s.errors.Collect(ch)
}

// pool returns the label value of name and its state, creating the entry
// counter at zero. Called with s.mu held.
func (s *slowlogMetrics) pool(name string, now time.Time) (string, *slowlogPool) {
	name = truncateUTF8(name, fpmMaxPoolLabel)
	if name == "" {
		name = "unknown"
	}
	return s.pools.Get(name, now)
}

// knownPool creates the entry counter of a pool at zero, so that the first
// slowlog entry is an increase Prometheus can see.
func (s *slowlogMetrics) knownPool(name string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool(name, now)
}

// observe counts e and returns its pool label value.
func (s *slowlogMetrics) observe(e *SlowlogEntry, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	pool, sp := s.pool(e.Pool, now)
	sp.entries.Inc()
	_, frames := sp.functions.Get(truncateUTF8(e.TopFunction(), 200), now)
	frames.Inc()
	return pool
}

// expire removes function series not seen since before.
func (s *slowlogMetrics) expire(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.pools.All() {
		sp.functions.Expire(before, nil)
	}
}

// SlowlogView is one followed slowlog in /api/v1/fpm.
type SlowlogView struct {
	Path    string `json:"path"`
	Entries uint64 `json:"entries"`
	Rotated uint64 `json:"rotations"`
	Offset  int64  `json:"offset"`
	Error   string `json:"error,omitempty"`
}

// slowlogState is what the API shows of each follower, updated after each
// poll.
type slowlogState struct {
	mu    sync.Mutex
	views []SlowlogView
}

// follow polls every slowlog until ctx ends.
func (m *fpmMonitor) follow(ctx context.Context, every time.Duration) {
	if len(m.a.cfg.FPMSlowlogs) == 0 {
		return
	}
	fs := make([]*slowlogFollower, len(m.a.cfg.FPMSlowlogs))
	for i, p := range m.a.cfg.FPMSlowlogs {
		fs[i] = newSlowlogFollower(p)
	}
	defer func() {
		for _, f := range fs {
			f.close()
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	lastExpire := m.a.now()
	for {
		now := m.a.now()
		for i, f := range fs {
			m.pollSlowlog(f, now)
			m.slowState.mu.Lock()
			v := SlowlogView{Path: f.path, Entries: f.entries, Rotated: f.rotated, Offset: f.offset}
			if f.err != nil {
				v.Error = f.err.Error()
			}
			if len(m.slowState.views) != len(fs) {
				m.slowState.views = make([]SlowlogView, len(fs))
			}
			m.slowState.views[i] = v
			m.slowState.mu.Unlock()
		}
		if now.Sub(lastExpire) >= time.Minute {
			m.slow.expire(now.Add(-m.a.cfg.SeriesTTL))
			lastExpire = now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollSlowlog polls f once and handles what it found.
func (m *fpmMonitor) pollSlowlog(f *slowlogFollower, now time.Time) {
	inv, cut := f.parser.invalid, f.parser.truncated
	entries, err := f.poll(now)
	if err != nil {
		m.slow.errors.WithLabelValues(slowlogErrOpen).Inc()
		m.log.Warn("cannot follow slowlog", "path", f.path, "err", err) // once per distinct error
	}
	if d := f.parser.invalid - inv; d > 0 {
		m.slow.errors.WithLabelValues(slowlogErrInvalid).Add(float64(d))
		if n, ok := m.slowLogs.Allow(); ok {
			m.log.Warn("slowlog has lines that are not php-fpm slowlog entries", "path", f.path, "lines", d, "suppressed_since_last", n)
		}
	}
	if d := f.parser.truncated - cut; d > 0 {
		m.slow.errors.WithLabelValues(slowlogErrTruncated).Add(float64(d))
	}
	if len(entries) == 0 {
		return
	}
	inflight := m.a.inflightByPID()
	for i := range entries {
		e := entries[i]
		pool := m.slow.observe(&e, now)
		req := InflightRequest{Pool: pool, PID: e.PID}
		var seconds float64
		if in, ok := inflight[e.PID]; ok && (in.Pool == "" || in.Pool == e.Pool) {
			req = in
			seconds = in.Age(now).Seconds()
		}
		at := e.Time
		if at.IsZero() {
			at = now
		}
		m.a.emit(Event{Kind: EventFPMSlowlog, Time: at, Seconds: seconds, Request: req, Slowlog: &e})
	}
}

// SlowlogViews returns the state of each followed slowlog.
func (a *Agent) SlowlogViews() []SlowlogView {
	st := &a.fpm.slowState
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.views) == 0 {
		out := make([]SlowlogView, len(a.cfg.FPMSlowlogs))
		for i, p := range a.cfg.FPMSlowlogs {
			out[i] = SlowlogView{Path: p, Error: "not polled yet"}
		}
		return out
	}
	return append([]SlowlogView(nil), st.views...)
}
