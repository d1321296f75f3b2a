package rawtrace

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// The spool in front of one sink: everything Emit accepted and the sink has
// not yet taken, on disk, so that an outage of the receiver or a restart of
// the process loses nothing until the spool is full.
//
// Its directory holds, for each priority, an append-only log cut into
// segments, "<priority>-<16 hex digits of sequence>.seg", and the log's
// ack cursor, "<priority>.cursor": "<segment> <offset> <records before the
// offset>", the first record not yet delivered. Each record is a big-endian
// uint32 length, the CRC-32C of the payload, and the payload: the Event
// without its line as JSON, a newline, the line (encodeRecord); a torn or
// damaged record is found by its length or checksum.
//
// Durability: every Append is one write(2) of the whole record before Emit
// returns, so a record survives a crash of the process (it is in the page
// cache); nothing is fsynced, so a crash of the machine may lose the last
// seconds, and may leave a torn tail, which the next open truncates and
// counts (reason spool_corrupt). The cursor is rewritten (temporary file
// and rename) on every Ack, so after a kill at most the batch that was
// being pushed, sent but not yet acknowledged, is sent again; a clean stop
// (Close) sends nothing twice.
//
// The spool is bounded by the sum of its segment sizes: past it, the
// oldest segment of the lowest-priority log that has one is deleted and its
// undelivered events counted as dropped (reason spool_full), so the newest
// events, and the more important ones, are kept.

// A segment is at most a sixteenth of the spool, so that eviction drops a
// small part of it at a time, and at most spoolSegmentMax.
const (
	spoolSegmentShare = 16
	spoolSegmentMax   = 4 << 20
	recordHeader      = 8 // uint32 length, uint32 CRC-32C
)

var (
	crcTable       = crc32.MakeTable(crc32.Castagnoli)
	errSpoolClosed = errors.New("spool closed")
	errCorrupt     = errors.New("torn or damaged record")
)

// spoolPos is a place in one log: a segment, a byte offset in it, and how
// many records lie before that offset in the segment.
type spoolPos struct {
	seq uint64
	off int64
	idx int
}

func (a spoolPos) before(b spoolPos) bool {
	return a.seq < b.seq || a.seq == b.seq && a.off < b.off
}

type segment struct {
	seq  uint64
	size int64 // bytes of whole records
	n    int   // records
}

type spoolLog struct {
	segs []*segment
	w    *os.File // the last segment, open for appending; nil: the next Append starts a segment
	cur  spoolPos // the first record not yet acknowledged
	next uint64   // sequence of the next segment
}

// spool is safe for concurrent use: Emit appends while the sink's sender
// peeks and acknowledges.
type spool struct {
	dir    string
	max    int64
	segMax int64
	m      sinkMetrics
	notify chan struct{} // a token after each Append, for the sender
	lock   *os.File      // holds the directory's lock until close

	mu     sync.Mutex
	logs   [numPriorities]spoolLog
	bytes  int64
	closed bool
}

// spoolBatch is what peek returned: the events, and where each log's
// cursor moves when they are acknowledged.
type spoolBatch struct {
	events []Event
	end    [numPriorities]spoolPos
	moved  [numPriorities]bool
}

// openSpool opens (creating it if need be) the spool in dir, bounded by max
// bytes, and takes in what a previous run left undelivered.
func openSpool(dir string, max int64, m sinkMetrics) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create spool dir %s: %w", dir, err)
	}
	lock, err := LockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &spool{dir: dir, max: max, segMax: min(max/spoolSegmentShare, spoolSegmentMax), m: m, notify: make(chan struct{}, 1), lock: lock}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("cannot read spool dir %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(dir, name)) // a cursor a kill interrupted; the previous one stands
			continue
		}
		p, seq, ok := parseSegmentName(name)
		if ok {
			s.logs[p].segs = append(s.logs[p].segs, &segment{seq: seq})
		}
	}
	for p := range numPriorities {
		if err := s.openLog(p); err != nil {
			lock.Close()
			return nil, err
		}
	}
	s.enforce()
	s.update()
	return s, nil
}

// LockDir takes the lock of a spool directory, the file .lock in it: two
// processes sending one spool (two commands given the same directory)
// would send its contents twice and overwrite each other's cursors or
// files. The kernel releases it when the process dies; closing the file
// releases it sooner.
func LockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cannot lock spool dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool dir %s is in use by another process: %w", dir, err)
	}
	return f, nil
}

func (s *spool) openLog(p Priority) error {
	l := &s.logs[p]
	slices.SortFunc(l.segs, func(a, b *segment) int { return cmp.Compare(a.seq, b.seq) })
	cur, err := s.readCursor(p)
	if err != nil {
		return err
	}
	l.cur = cur
	l.next = cur.seq + 1
	for _, seg := range l.segs {
		l.next = max(l.next, seg.seq+1)
		if seg.seq < cur.seq {
			continue // consumed; trim removes it
		}
		path := s.segPath(p, seg.seq)
		n, valid, size, err := scanSegment(path)
		if err != nil {
			return err
		}
		if valid < size {
			s.m.corrupt.Inc()
			if err := os.Truncate(path, valid); err != nil {
				return fmt.Errorf("cannot cut the torn tail of spool segment %s: %w", path, err)
			}
		}
		seg.n, seg.size = n, valid
		s.bytes += valid
		if seg.seq == cur.seq && (cur.off > valid || cur.idx > n) {
			l.cur = spoolPos{seq: seg.seq, off: valid, idx: n}
		}
	}
	s.trim(p)
	return nil
}

// append writes one record (from encodeRecord) to the log of priority p.
func (s *spool) append(p Priority, rec []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSpoolClosed
	}
	l := &s.logs[p]
	if l.w != nil {
		if last := l.segs[len(l.segs)-1]; last.size > 0 && last.size+int64(len(rec)) > s.segMax {
			l.w.Close()
			l.w = nil
		}
	}
	if l.w == nil {
		seq := l.next
		f, err := os.OpenFile(s.segPath(p, seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("cannot create spool segment: %w", err)
		}
		l.next++
		l.w = f
		l.segs = append(l.segs, &segment{seq: seq})
		if len(l.segs) == 1 {
			l.cur = spoolPos{seq: seq}
		}
	}
	if _, err := l.w.Write(rec); err != nil {
		// A partial write lies past the segment's size, where no reader
		// looks; the next open cuts it. Start a new segment after it.
		l.w.Close()
		l.w = nil
		return fmt.Errorf("cannot write to spool segment: %w", err)
	}
	last := l.segs[len(l.segs)-1]
	last.size += int64(len(rec))
	last.n++
	s.bytes += int64(len(rec))
	s.enforce()
	s.update()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

// enforce deletes the oldest segments of the lowest-priority logs until the
// spool is within its bound, counting their undelivered events.
func (s *spool) enforce() {
	for s.bytes > s.max {
		p := numPriorities - 1
		for len(s.logs[p].segs) == 0 {
			p-- // some log has a segment: bytes > 0
		}
		l := &s.logs[p]
		seg := l.segs[0]
		lost := seg.n
		if l.cur.seq == seg.seq {
			lost -= l.cur.idx
		}
		s.removeFirst(p)
		s.m.spoolFull.Add(float64(lost))
	}
}

// trim deletes the segments of log p that are wholly acknowledged.
func (s *spool) trim(p Priority) {
	l := &s.logs[p]
	for len(l.segs) > 0 {
		seg := l.segs[0]
		if seg.seq >= l.cur.seq && (seg.seq > l.cur.seq || l.cur.idx < seg.n) {
			break
		}
		s.removeFirst(p)
	}
	switch {
	case len(l.segs) == 0:
		l.cur = spoolPos{seq: l.next}
	case l.cur.seq < l.segs[0].seq:
		l.cur = spoolPos{seq: l.segs[0].seq}
	}
}

// removeFirst deletes the oldest segment of log p (closing it first when it
// is the one being appended to) and moves the cursor past it.
func (s *spool) removeFirst(p Priority) {
	l := &s.logs[p]
	seg := l.segs[0]
	if len(l.segs) == 1 && l.w != nil {
		l.w.Close()
		l.w = nil
	}
	_ = os.Remove(s.segPath(p, seg.seq)) // gone already is as good; anything else leaves a file the next open takes in again
	s.bytes -= seg.size
	l.segs = l.segs[1:]
	switch {
	case len(l.segs) == 0:
		l.cur = spoolPos{seq: l.next}
	case l.cur.seq < l.segs[0].seq:
		l.cur = spoolPos{seq: l.segs[0].seq}
	}
}

// pending returns the events not yet acknowledged and roughly their bytes.
func (s *spool) pending() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingLocked()
}

func (s *spool) pendingLocked() (n int, bytes int64) {
	for p := range numPriorities {
		l := &s.logs[p]
		for _, seg := range l.segs {
			n += seg.n
			bytes += seg.size
			if seg.seq == l.cur.seq {
				n -= l.cur.idx
				bytes -= l.cur.off
			}
		}
	}
	return n, bytes
}

func (s *spool) update() {
	n, _ := s.pendingLocked()
	s.m.queued.Set(float64(n))
	s.m.spoolBytes.Set(float64(s.bytes))
}
