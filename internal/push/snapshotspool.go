package push

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bitville/bitville-apm/internal/rawtrace"
	"github.com/prometheus/client_golang/prometheus"
)

// The spool of snapshots not yet delivered: one gzipped file a snapshot,
// so that an outage of pushgw or a restart of the process loses nothing
// until the spool is full.
//
// A snapshot file is named
//
//	<unix ms, 16 digits>-<boot>-<seq, 20 digits>-<interval ms>.prom.gz
//
// which is everything its push headers need: a snapshot left by a
// previous run is sent with its own Bitville-Batch, Bitville-Time and
// Bitville-Interval, and the names sort by the time the snapshots were
// gathered. A file is written under a temporary name, synced and renamed,
// so a crash leaves either the whole snapshot or a ".tmp" file that the
// next open deletes.
//
// The spool is bounded by the sum of its file sizes: past it, the oldest
// snapshots are deleted and counted as dropped, except the newest one and
// the one being sent.

const (
	snapshotSuffix = ".prom.gz"
	tmpSuffix      = ".tmp"
)

var errSpoolClosed = errors.New("snapshot spool closed")

// snapshotMeta is what the push headers of one snapshot say.
type snapshotMeta struct {
	Batch    BatchID
	Time     time.Time // when it was gathered, to the millisecond
	Interval time.Duration
}

func (m snapshotMeta) fileName() string {
	return fmt.Sprintf("%016d-%s-%020d-%d%s", max(m.Time.UnixMilli(), 0), m.Batch.Boot, m.Batch.Seq, m.Interval.Milliseconds(), snapshotSuffix)
}

// parseSnapshotName reads a fileName; ok is false for any other name.
func parseSnapshotName(name string) (m snapshotMeta, ok bool) {
	rest, ok := strings.CutSuffix(name, snapshotSuffix)
	if !ok {
		return m, false
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 4 || len(parts[0]) != 16 || len(parts[2]) != 20 {
		return m, false
	}
	ms, err1 := strconv.ParseInt(parts[0], 10, 64)
	seq, err2 := strconv.ParseUint(parts[2], 10, 64)
	iv, err3 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || ms < 0 || iv < 0 || !validBoot(parts[1]) || seq < 1 || seq > maxSeq {
		return m, false
	}
	return snapshotMeta{
		Batch:    BatchID{Boot: parts[1], Seq: seq},
		Time:     time.UnixMilli(ms),
		Interval: time.Duration(iv) * time.Millisecond,
	}, true
}

type snapshotFile struct {
	name string
	size int64
	meta snapshotMeta
}

type spoolMetrics struct {
	snapshots, bytes prometheus.Gauge
	dropped          prometheus.Counter
}

// snapshotSpool is safe for concurrent use: the gathering goroutine adds
// while the sender takes and removes.
type snapshotSpool struct {
	dir    string
	max    int64
	m      spoolMetrics
	lock   *os.File      // holds the directory's lock until close
	notify chan struct{} // a token after each add, for the sender

	mu     sync.Mutex
	files  []snapshotFile // oldest first
	bytes  int64
	busy   string // name of the file being sent, never evicted
	closed bool
}

// openSnapshotSpool opens (creating it if need be) the spool in dir,
// bounded by max bytes, and takes in the snapshots a previous run left.
// It fails when another process holds the directory.
func openSnapshotSpool(dir string, max int64, m spoolMetrics) (*snapshotSpool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create push spool dir %s: %w", dir, err)
	}
	lock, err := rawtrace.LockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot open the push spool: %w", err)
	}
	s := &snapshotSpool{dir: dir, max: max, m: m, lock: lock, notify: make(chan struct{}, 1)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("cannot read push spool dir %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpSuffix) {
			_ = os.Remove(filepath.Join(dir, name)) // a write a crash interrupted
			continue
		}
		meta, ok := parseSnapshotName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		if info.Size() == 0 { // renamed but never written out: a crash of the machine
			_ = os.Remove(filepath.Join(dir, name))
			m.dropped.Inc()
			continue
		}
		s.files = append(s.files, snapshotFile{name: name, size: info.Size(), meta: meta})
		s.bytes += info.Size()
	}
	slices.SortFunc(s.files, func(a, b snapshotFile) int { return strings.Compare(a.name, b.name) })
	s.enforce()
	s.update()
	return s, nil
}

// add writes one snapshot (its gzipped body) and evicts the oldest ones
// past the bound.
func (s *snapshotSpool) add(meta snapshotMeta, body []byte) error {
	name := meta.fileName()
	path := filepath.Join(s.dir, name)
	if err := writeFileSynced(path+tmpSuffix, body); err != nil {
		_ = os.Remove(path + tmpSuffix)
		return fmt.Errorf("cannot write snapshot %s: %w", meta.Batch, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = os.Remove(path + tmpSuffix)
		return errSpoolClosed
	}
	if err := os.Rename(path+tmpSuffix, path); err != nil {
		_ = os.Remove(path + tmpSuffix)
		return fmt.Errorf("cannot write snapshot %s: %w", meta.Batch, err)
	}
	s.files = append(s.files, snapshotFile{name: name, size: int64(len(body)), meta: meta})
	s.bytes += int64(len(body))
	s.enforce()
	s.update()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func writeFileSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// enforce deletes the oldest snapshots until the spool is within its
// bound, keeping the newest and the one being sent.
func (s *snapshotSpool) enforce() {
	for i := 0; s.bytes > s.max && i < len(s.files)-1; {
		f := s.files[i]
		if f.name == s.busy {
			i++
			continue
		}
		s.removeAt(i)
		s.m.dropped.Inc()
	}
}

func (s *snapshotSpool) removeAt(i int) {
	f := s.files[i]
	_ = os.Remove(filepath.Join(s.dir, f.name)) // gone already is as good; anything else leaves a file the next open takes in again
	s.bytes -= f.size
	s.files = slices.Delete(s.files, i, i+1)
}

// take returns the oldest snapshot and its body, and keeps it from
// eviction until done or release. ok is false when the spool is empty. A
// file that cannot be read is dropped and returned as err.
func (s *snapshotSpool) take() (f snapshotFile, body []byte, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.files) == 0 || s.closed {
		return f, nil, false, nil
	}
	f = s.files[0]
	body, err = os.ReadFile(filepath.Join(s.dir, f.name))
	if err != nil {
		s.removeAt(0)
		s.m.dropped.Inc()
		s.update()
		return f, nil, false, fmt.Errorf("cannot read snapshot %s; dropped: %w", f.meta.Batch, err)
	}
	s.busy = f.name
	return f, body, true, nil
}

// done deletes a snapshot that was taken (delivered or refused for good).
func (s *snapshotSpool) done(f snapshotFile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = ""
	if i := slices.IndexFunc(s.files, func(g snapshotFile) bool { return g.name == f.name }); i >= 0 {
		s.removeAt(i)
	}
	s.enforce()
	s.update()
}

// release lets a snapshot that was taken but not delivered be evicted
// again.
func (s *snapshotSpool) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = ""
	s.enforce()
	s.update()
}

// len is the number of snapshots and their bytes.
func (s *snapshotSpool) len() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files), s.bytes
}

func (s *snapshotSpool) update() {
	s.m.snapshots.Set(float64(len(s.files)))
	s.m.bytes.Set(float64(s.bytes))
}

// close lets go of the directory; the snapshots stay for the next run.
func (s *snapshotSpool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lock.Close()
}
