package fpm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"
)

// The slowlog parser. php-fpm writes an entry when a request runs past
// request_slowlog_timeout: the time, the pool, the worker pid, the script
// and the PHP stack, innermost frame first. slowlog_follow.go tails the
// files, slowlog_metrics.go counts the entries.

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
