package push

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func testSpoolMetrics() spoolMetrics {
	return spoolMetrics{
		snapshots: prometheus.NewGauge(prometheus.GaugeOpts{Name: "s", Help: "s"}),
		bytes:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "b", Help: "b"}),
		dropped:   prometheus.NewCounter(prometheus.CounterOpts{Name: "d", Help: "d"}),
	}
}

func TestSnapshotName(t *testing.T) {
	meta := snapshotMeta{Batch: BatchID{Boot: "0123456789abcdef", Seq: 42}, Time: time.UnixMilli(1_790_000_000_123), Interval: 15 * time.Second}
	name := meta.fileName()
	if want := "0001790000000123-0123456789abcdef-00000000000000000042-15000.prom.gz"; name != want {
		t.Errorf("fileName() = %s; want %s", name, want)
	}
	got, ok := parseSnapshotName(name)
	if !ok || got.Batch != meta.Batch || !got.Time.Equal(meta.Time) || got.Interval != meta.Interval {
		t.Errorf("parseSnapshotName(%s) = %+v, %v; want %+v", name, got, ok, meta)
	}
	for _, bad := range []string{
		".lock",
		name + ".tmp",
		"0001790000000123-0123456789ABCDEF-00000000000000000042-15000.prom.gz",
		"0001790000000123-0123456789abcdef-00000000000000000000-15000.prom.gz",
		"1790000000123-0123456789abcdef-00000000000000000042-15000.prom.gz",
		"0001790000000123-0123456789abcdef-42-15000.prom.gz",
		"0001790000000123-0123456789abcdef-00000000000000000042.prom.gz",
		"0001790000000123-0123456789abcdef-00000000000000000042-x.prom.gz",
	} {
		t.Run(bad, func(t *testing.T) {
			if _, ok := parseSnapshotName(bad); ok {
				t.Errorf("parseSnapshotName(%s) accepted it; want refused", bad)
			}
		})
	}
}

func TestSnapshotSpoolEvictsOldestKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	m := testSpoolMetrics()
	s, err := openSnapshotSpool(dir, 25, m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	add := func(seq uint64, size int) {
		t.Helper()
		meta := snapshotMeta{Batch: BatchID{Boot: "0123456789abcdef", Seq: seq}, Time: time.UnixMilli(int64(seq)), Interval: time.Second}
		if err := s.add(meta, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	add(1, 10)
	add(2, 10)
	add(3, 10) // 30 > 25: 1 goes
	if n, b := s.len(); n != 2 || b != 20 {
		t.Errorf("got %d snapshots, %d bytes; want 2, 20", n, b)
	}
	f, _, ok, err := s.take()
	if err != nil || !ok || f.meta.Batch.Seq != 2 {
		t.Fatalf("take() = seq %d, %v, %v; want seq 2", f.meta.Batch.Seq, ok, err)
	}
	add(4, 10) // 2 is being sent: 3 goes
	s.release()
	add(5, 40) // bigger than the spool: all but it go
	if n, b := s.len(); n != 1 || b != 40 {
		t.Errorf("got %d snapshots, %d bytes; want the newest alone, 40", n, b)
	}
	if got := value(t, m.dropped); got != 4 {
		t.Errorf("dropped = %g; want 4", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 { // .lock and the newest
		t.Errorf("got %d files in the spool dir; want 2", len(entries))
	}
}

func TestSnapshotSpoolReopens(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newer := snapshotMeta{Batch: BatchID{Boot: "1111111111111111", Seq: 1}, Time: time.UnixMilli(2000), Interval: time.Second}
	older := snapshotMeta{Batch: BatchID{Boot: "ffffffffffffffff", Seq: 9}, Time: time.UnixMilli(1000), Interval: time.Second}
	empty := snapshotMeta{Batch: BatchID{Boot: "ffffffffffffffff", Seq: 10}, Time: time.UnixMilli(1500), Interval: time.Second}
	write(newer.fileName(), 5)
	write(older.fileName(), 5)
	write(empty.fileName(), 0)
	write(newer.fileName()+tmpSuffix, 3)
	write("notes.txt", 3)

	m := testSpoolMetrics()
	s, err := openSnapshotSpool(dir, 1<<20, m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if n, b := s.len(); n != 2 || b != 10 {
		t.Errorf("got %d snapshots, %d bytes; want 2, 10", n, b)
	}
	if got := value(t, m.dropped); got != 1 {
		t.Errorf("dropped = %g; want the empty file counted", got)
	}
	for _, want := range []snapshotMeta{older, newer} {
		f, _, ok, err := s.take()
		if err != nil || !ok || f.meta.Batch != want.Batch {
			t.Fatalf("take() = %s, %v, %v; want %s, the oldest", f.meta.Batch, ok, err, want.Batch)
		}
		s.done(f)
	}
	if _, err := os.Stat(filepath.Join(dir, newer.fileName()+tmpSuffix)); !os.IsNotExist(err) {
		t.Errorf("the temporary file is still there (%v); want it deleted", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("a foreign file was touched: %v", err)
	}
}
