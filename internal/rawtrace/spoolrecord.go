package rawtrace

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The spool's files: records, segments and cursors (spool.go describes
// the layout).

// encodeRecord frames e as one spool record: its other fields as JSON, a
// newline, then its line as it is. The line is not encoded again (it is
// the bulk of the record, and re-encoding a json.RawMessage rescans it),
// only checked to be a JSON object's outline; it fails when it is not.
func encodeRecord(e Event) ([]byte, error) {
	if n := len(e.Line); n < 2 || e.Line[0] != '{' || e.Line[n-1] != '}' {
		return nil, fmt.Errorf("cannot encode %s event: its line is not a JSON object", e.Kind)
	}
	line := e.Line
	e.Line = nil
	meta, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("cannot encode %s event: %w", e.Kind, err)
	}
	n := len(meta) + 1 + len(line)
	rec := make([]byte, recordHeader, recordHeader+n)
	rec = append(append(append(rec, meta...), '\n'), line...)
	binary.BigEndian.PutUint32(rec, uint32(n))
	binary.BigEndian.PutUint32(rec[4:], crc32.Checksum(rec[recordHeader:], crcTable))
	return rec, nil
}

// decodeRecord is the event of a record's payload (encodeRecord). The
// line is a slice of body.
func decodeRecord(body []byte) (Event, error) {
	var e Event
	i := bytes.IndexByte(body, '\n')
	if i < 0 {
		return e, errCorrupt
	}
	if err := json.Unmarshal(body[:i], &e); err != nil {
		return e, err
	}
	e.Line = body[i+1:]
	return e, nil
}

// recordReader reads the records of one segment up to a size.
type recordReader struct {
	r    *bufio.Reader
	left int64 // bytes up to the size
	hdr  [recordHeader]byte
}

func newRecordReader(f *os.File, off, size int64) *recordReader {
	return &recordReader{r: bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), 64<<10), left: size - off}
}

// next returns the payload of the next record and its framed size, io.EOF
// at the size, or errCorrupt (or a read error) for a record that is not
// whole and intact.
func (rr *recordReader) next() ([]byte, int64, error) {
	if rr.left == 0 {
		return nil, 0, io.EOF
	}
	if rr.left < recordHeader {
		return nil, 0, errCorrupt
	}
	if _, err := io.ReadFull(rr.r, rr.hdr[:]); err != nil {
		return nil, 0, err
	}
	n := int64(binary.BigEndian.Uint32(rr.hdr[:]))
	if n > rr.left-recordHeader {
		return nil, 0, errCorrupt
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rr.r, body); err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(rr.hdr[4:]) {
		return nil, 0, errCorrupt
	}
	rr.left -= recordHeader + n
	return body, recordHeader + n, nil
}

// scanSegment counts the whole records at the start of a segment file and
// their bytes; valid < size when the file ends in a torn or damaged
// record.
func scanSegment(path string) (n int, valid, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cannot open spool segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cannot open spool segment: %w", err)
	}
	size = st.Size()
	rr := newRecordReader(f, 0, size)
	for {
		_, m, err := rr.next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, errCorrupt) || errors.Is(err, io.ErrUnexpectedEOF) {
				return n, valid, size, nil
			}
			return 0, 0, 0, fmt.Errorf("cannot read spool segment %s: %w", path, err)
		}
		n++
		valid += m
	}
}

// peek returns the oldest undelivered events, the highest priority first,
// at most maxEvents of them and (but for a first larger one) maxBytes of
// lines. The cursors move only with ack.
func (s *spool) peek(maxEvents int, maxBytes int64) spoolBatch {
	var b spoolBatch
	var bodies [][]byte
	var lines int64
	s.mu.Lock()
	full := false
	for p := Priority(0); p < numPriorities && !full; p++ {
		l := &s.logs[p]
		pos := l.cur
		for _, seg := range l.segs {
			if seg.seq < pos.seq || full {
				continue
			}
			if seg.seq > pos.seq {
				pos = spoolPos{seq: seg.seq}
			}
			full = s.readSegment(p, seg, &pos, func(body []byte) bool {
				if len(bodies) == maxEvents {
					return false
				}
				// The line is most of the record: the record's size
				// stands for it without decoding under the lock.
				if len(bodies) > 0 && lines+int64(len(body)) > maxBytes {
					return false
				}
				bodies = append(bodies, body)
				lines += int64(len(body))
				return true
			})
		}
		b.end[p], b.moved[p] = pos, pos != l.cur
	}
	s.mu.Unlock()
	b.events = make([]Event, 0, len(bodies))
	for _, body := range bodies {
		e, err := decodeRecord(body)
		if err != nil {
			s.m.corrupt.Inc() // the checksum held: written so by an incompatible version
			continue
		}
		b.events = append(b.events, e)
	}
	return b
}

// readSegment hands take the records of seg from pos on, advancing pos
// past each one take accepts, and reports whether take refused one (the
// batch is full). A damaged record skips the rest of the segment.
func (s *spool) readSegment(p Priority, seg *segment, pos *spoolPos, take func([]byte) bool) (full bool) {
	if pos.idx >= seg.n {
		return false
	}
	f, err := os.Open(s.segPath(p, seg.seq))
	if err == nil {
		defer f.Close()
		rr := newRecordReader(f, pos.off, seg.size)
		for pos.idx < seg.n {
			body, m, rerr := rr.next()
			if rerr != nil {
				err = rerr
				break
			}
			if !take(body) {
				return true
			}
			pos.off += m
			pos.idx++
		}
	}
	if err != nil {
		s.m.corrupt.Inc()
		*pos = spoolPos{seq: seg.seq, off: seg.size, idx: seg.n}
	}
	return false
}

// ack moves the cursors past a batch peek returned, deletes the segments
// now wholly delivered and saves the cursors that moved.
func (s *spool) ack(b spoolBatch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for p := range numPriorities {
		l := &s.logs[p]
		if !b.moved[p] || !l.cur.before(b.end[p]) {
			continue // nothing taken, or evicted meanwhile
		}
		l.cur = b.end[p]
		s.trim(p)
		if !s.closed {
			errs = append(errs, s.writeCursor(p))
		}
	}
	s.update()
	return errors.Join(errs...)
}

// close saves every cursor and closes the segment being appended to; later
// appends fail.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for p := range numPriorities {
		errs = append(errs, s.writeCursor(p))
		if l := &s.logs[p]; l.w != nil {
			errs = append(errs, l.w.Close())
			l.w = nil
		}
	}
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

func (s *spool) segPath(p Priority, seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%016x.seg", p, seq))
}

func (s *spool) cursorPath(p Priority) string {
	return filepath.Join(s.dir, p.String()+".cursor")
}

func parseSegmentName(name string) (Priority, uint64, bool) {
	prio, hex, ok := strings.Cut(strings.TrimSuffix(name, ".seg"), "-")
	if !ok || !strings.HasSuffix(name, ".seg") {
		return 0, 0, false
	}
	seq, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return 0, 0, false
	}
	for p := range numPriorities {
		if p.String() == prio {
			return p, seq, true
		}
	}
	return 0, 0, false
}

// writeCursor saves the cursor of log p whole: a temporary file renamed
// over the old one.
func (s *spool) writeCursor(p Priority) error {
	c := s.logs[p].cur
	path := s.cursorPath(p)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d %d\n", c.seq, c.off, c.idx), 0o640); err != nil {
		return fmt.Errorf("cannot save spool cursor: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cannot save spool cursor: %w", err)
	}
	return nil
}

// readCursor reads the cursor of log p; none (a new spool) is the start.
// A damaged one is an error rather than a silent replay of everything.
func (s *spool) readCursor(p Priority) (spoolPos, error) {
	path := s.cursorPath(p)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return spoolPos{}, nil
	}
	if err != nil {
		return spoolPos{}, fmt.Errorf("cannot read spool cursor: %w", err)
	}
	var c spoolPos
	if _, err := fmt.Sscanf(string(b), "%d %d %d\n", &c.seq, &c.off, &c.idx); err != nil || c.off < 0 || c.idx < 0 {
		return spoolPos{}, fmt.Errorf("cannot parse spool cursor %s (%q): remove it to send the spool again from its start", path, b)
	}
	return c, nil
}
