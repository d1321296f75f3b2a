package fpm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

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

// follow polls every slowlog until ctx ends.
func (m *Monitor) follow(ctx context.Context, every time.Duration) {
	if len(m.cfg.Slowlogs) == 0 {
		return
	}
	fs := make([]*slowlogFollower, len(m.cfg.Slowlogs))
	for i, p := range m.cfg.Slowlogs {
		fs[i] = newSlowlogFollower(p)
	}
	defer func() {
		for _, f := range fs {
			f.close()
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	lastExpire := m.now()
	for {
		now := m.now()
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
			m.slow.expire(now.Add(-m.seriesTTL))
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
func (m *Monitor) pollSlowlog(f *slowlogFollower, now time.Time) {
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
	for _, e := range entries {
		m.reportSlowlog(e, m.slow.observe(&e, now), now)
	}
}
