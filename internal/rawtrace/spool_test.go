package rawtrace

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// testSpool opens a spool in dir with metrics of its own registry.
func testSpool(t *testing.T, dir string, max int64) (*spool, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSpool(dir, max, m.forSink("loki"))
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func spoolEvents(t *testing.T, s *spool, p Priority, prefix string, n int) {
	t.Helper()
	for i := range n {
		rec, err := encodeRecord(testEvent(fmt.Sprint(prefix, i), p))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.append(p, rec); err != nil {
			t.Fatal(err)
		}
	}
}

// peekIDs returns the ids of every event peek gives, in its order.
func peekIDs(s *spool) []string {
	var ids []string
	for _, e := range s.peek(1<<20, 1<<30).events {
		ids = append(ids, lineID(e))
	}
	return ids
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprint(prefix, i))
	}
	return out
}

func TestFullSpoolDropsTheOldestOfTheLowestPriority(t *testing.T) {
	const max = 16 << 10
	s, reg := testSpool(t, t.TempDir(), max)
	defer s.close()
	spoolEvents(t, s, PriorityError, "e", 5)
	spoolEvents(t, s, PrioritySampled, "s", 200)
	if s.bytes > max {
		t.Fatalf("spool holds %d bytes; want at most %d", s.bytes, max)
	}
	got := peekIDs(s)
	if !slices.Equal(got[:5], ids("e", 0, 5)) {
		t.Fatalf("first events %v; want the 5 errors first", got[:5])
	}
	kept := len(got) - 5
	if kept == 0 || kept == 200 {
		t.Fatalf("kept %d sampled events; want some but not all", kept)
	}
	if want := ids("s", 200-kept, 200); !slices.Equal(got[5:], want) {
		t.Errorf("kept sampled %v; want the newest %v", got[5:], want)
	}
	if d := metric(t, reg, "bitville_events_dropped_total{reason=spool_full,sink=loki}"); d != float64(200-kept) {
		t.Errorf("spool_full = %v; want %d", d, 200-kept)
	}

	// Slow events push out every sampled one, then their own oldest; the
	// errors stay.
	spoolEvents(t, s, PrioritySlow, "w", 200)
	got = peekIDs(s)
	if !slices.Equal(got[:5], ids("e", 0, 5)) {
		t.Fatalf("first events %v; want the 5 errors first", got[:5])
	}
	slow := len(got) - 5
	if want := ids("w", 200-slow, 200); !slices.Equal(got[5:], want) {
		t.Errorf("kept %v; want the newest slow events %v", got[5:], want)
	}
	if d := metric(t, reg, "bitville_events_dropped_total{reason=spool_full,sink=loki}"); d != float64(400-slow) {
		t.Errorf("spool_full = %v; want %d", d, 400-slow)
	}
	if q := metric(t, reg, "bitville_events_queued{sink=loki}"); q != float64(len(got)) {
		t.Errorf("queued = %v; want %d", q, len(got))
	}
	if b := metric(t, reg, "bitville_events_spool_bytes{sink=loki}"); b != float64(s.bytes) || b > max {
		t.Errorf("spool_bytes = %v; want %d, at most %d", b, s.bytes, max)
	}
}

func TestSpoolPeeksByPriorityAndAcks(t *testing.T) {
	dir := t.TempDir()
	s, reg := testSpool(t, dir, 16<<10)
	spoolEvents(t, s, PrioritySampled, "s", 3)
	spoolEvents(t, s, PrioritySlow, "w", 3)
	spoolEvents(t, s, PriorityError, "e", 3)
	b := s.peek(5, 1<<30)
	var got []string
	for _, e := range b.events {
		got = append(got, lineID(e))
	}
	if want := []string{"e0", "e1", "e2", "w0", "w1"}; !slices.Equal(got, want) {
		t.Fatalf("first batch %v; want %v", got, want)
	}
	if err := s.ack(b); err != nil {
		t.Fatal(err)
	}
	if want := []string{"w2", "s0", "s1", "s2"}; !slices.Equal(peekIDs(s), want) {
		t.Fatalf("after the ack %v; want %v", peekIDs(s), want)
	}
	if err := s.ack(s.peek(100, 1<<30)); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 0 || s.bytes != 0 {
		t.Errorf("after acknowledging everything: segments %v, %d bytes; want none", segs, s.bytes)
	}
	if q := metric(t, reg, "bitville_events_queued{sink=loki}"); q != 0 {
		t.Errorf("queued = %v; want 0", q)
	}
	// Appending after the cursor passed everything starts afresh.
	spoolEvents(t, s, PrioritySlow, "x", 2)
	if want := []string{"x0", "x1"}; !slices.Equal(peekIDs(s), want) {
		t.Errorf("got %v; want %v", peekIDs(s), want)
	}
	s.close()
}

func TestSpoolRecoversDamagedSegments(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
		kept   int
	}{
		{"torn tail", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// A header promising 500 bytes, and only 3 of them.
			if _, err := f.Write([]byte{0, 0, 1, 0xf4, 1, 2, 3, 4, '{', '"', 'k'}); err != nil {
				t.Fatal(err)
			}
		}, 10},
		{"damaged record", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)*6/10] ^= 0xff // within the seventh of ten records
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := testSpool(t, dir, 1<<20)
			spoolEvents(t, s, PrioritySampled, "s", 10)
			s.close()
			segs, _ := filepath.Glob(filepath.Join(dir, "sampled-*.seg"))
			if len(segs) != 1 {
				t.Fatalf("segments %v; want one", segs)
			}
			c.damage(t, segs[0])

			s, reg := testSpool(t, dir, 1<<20)
			defer s.close()
			if d := metric(t, reg, "bitville_events_dropped_total{reason=spool_corrupt,sink=loki}"); d != 1 {
				t.Errorf("spool_corrupt = %v; want 1", d)
			}
			if got, want := peekIDs(s), ids("s", 0, c.kept); !slices.Equal(got, want) {
				t.Errorf("after the damage %v; want %v", got, want)
			}
			spoolEvents(t, s, PrioritySampled, "n", 1)
			if got, want := peekIDs(s), append(ids("s", 0, c.kept), "n0"); !slices.Equal(got, want) {
				t.Errorf("after one more %v; want %v", got, want)
			}
		})
	}
}
