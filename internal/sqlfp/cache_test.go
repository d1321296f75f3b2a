package sqlfp

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestCacheHitReturnsSameResult(t *testing.T) {
	tests := []struct{ name, sql string }{
		{"pg_query", "SELECT * FROM t WHERE id = 42"},
		{"fallback", "SELECT * FROM `t` WHERE id = 'cut"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(100)
			want := Fingerprint(tt.sql)
			first := c.Lookup([]byte(tt.sql))
			second := c.Lookup([]byte(tt.sql))
			if first != want || second != want {
				t.Errorf("Lookup = %+v then %+v; want %+v", first, second, want)
			}
			st := c.Stats()
			wantFB := uint64(0)
			if want.Fallback {
				wantFB = 1
			}
			if st.Hits != 1 || st.Misses != 1 || st.Fallbacks != wantFB || st.Entries != 1 {
				t.Errorf("Stats() = %+v; want 1 hit, 1 miss, %d fallbacks, 1 entry", st, wantFB)
			}
		})
	}
}

func TestCacheDoesNotRetainBuffer(t *testing.T) {
	c := NewCache(100)
	buf := []byte("SELECT * FROM orders WHERE id = 1")
	want := c.Lookup(buf)
	copy(buf, "DELETE")
	if got := c.Lookup([]byte("SELECT * FROM orders WHERE id = 1")); got != want {
		t.Errorf("after reusing the buffer, Lookup = %+v; want %+v", got, want)
	}
	if st := c.Stats(); st.Hits != 1 {
		t.Errorf("Stats().Hits = %d; want 1", st.Hits)
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	c := NewCache(1000)
	texts := [][]byte{
		[]byte("SELECT * FROM t WHERE id = 42"),
		[]byte("SELECT * FROM `t` WHERE id = 'cut"),
	}
	for _, b := range texts {
		c.Lookup(b)
	}
	for _, b := range texts {
		if allocs := testing.AllocsPerRun(100, func() { c.Lookup(b) }); allocs != 0 {
			t.Errorf("Lookup(%q) hit: got %v allocs; want 0", b, allocs)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	for _, size := range []int{1, 2, 10, 1000, 10000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := NewCache(size)
			limit := max(size, 2)
			for i := 0; i < 3*limit+100; i++ {
				c.Lookup([]byte(fmt.Sprintf("SELECT c%d FROM t WHERE id = 1", i)))
				if e := c.Stats().Entries; e > limit {
					t.Fatalf("after %d distinct texts Entries = %d; want <= %d", i+1, e, limit)
				}
			}
			if e := c.Stats().Entries; e == 0 {
				t.Errorf("Entries = 0; want some entries kept")
			}
		})
	}
}

func TestCacheKeepsHotEntries(t *testing.T) {
	c := NewCache(64)
	hot := []byte("SELECT * FROM hot WHERE id = 1")
	c.Lookup(hot)
	for i := 0; i < 1000; i++ {
		c.Lookup([]byte(fmt.Sprintf("SELECT c%d FROM cold", i)))
		c.Lookup(hot)
	}
	if st := c.Stats(); st.Hits != 1000 {
		t.Errorf("Stats().Hits = %d; want 1000 (the hot text must survive generation turns)", st.Hits)
	}
}

func TestCacheLongTextsNotCached(t *testing.T) {
	c := NewCache(100)
	long := []byte("SELECT * FROM t WHERE a IN (" + strings.Repeat("1, ", MaxCacheKeyLen/3) + "1)")
	want := Fingerprint(string(long))
	for i := 0; i < 2; i++ {
		if got := c.Lookup(long); got != want {
			t.Errorf("Lookup = %+v; want %+v", got, want)
		}
	}
	if st := c.Stats(); st.Entries != 0 || st.Misses != 2 || st.Hits != 0 {
		t.Errorf("Stats() = %+v; want 0 entries, 2 misses, 0 hits", st)
	}
}

func TestCacheDefaultSize(t *testing.T) {
	c := NewCache(0)
	if got := len(c.shards) * c.genSize * 2; got > DefaultCacheEntries || got < DefaultCacheEntries/2 {
		t.Errorf("capacity = %d; want about %d", got, DefaultCacheEntries)
	}
}

// TestCacheConcurrent is meant for -race: many goroutines hitting, missing,
// promoting and rotating generations at once.
func TestCacheConcurrent(t *testing.T) {
	c := NewCache(256)
	texts := make([][]byte, 600)
	want := make([]Result, len(texts))
	for i := range texts {
		if i%5 == 0 {
			texts[i] = []byte(fmt.Sprintf("SELECT * FROM `t%d` WHERE x = 'cut", i))
		} else {
			texts[i] = []byte(fmt.Sprintf("SELECT c%d FROM t WHERE id = %d", i, i))
		}
		want[i] = Fingerprint(string(texts[i]))
	}
	const goroutines, rounds = 16, 2000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 128)
			for r := 0; r < rounds; r++ {
				i := (g*7919 + r*31) % len(texts)
				if r%3 == 0 {
					i %= 20 // a hot subset, so that there are hits
				}
				buf = append(buf[:0], texts[i]...) // reused buffer
				if got := c.Lookup(buf); got != want[i] {
					t.Errorf("Lookup(%q) = %+v; want %+v", texts[i], got, want[i])
					return
				}
				if r%100 == 0 {
					c.Stats()
				}
			}
		}()
	}
	wg.Wait()
	st := c.Stats()
	if st.Hits+st.Misses != goroutines*rounds {
		t.Errorf("Hits+Misses = %d; want %d", st.Hits+st.Misses, goroutines*rounds)
	}
	if st.Entries > 256 {
		t.Errorf("Entries = %d; want <= 256", st.Entries)
	}
	if st.Hits == 0 || st.Fallbacks == 0 {
		t.Errorf("Stats() = %+v; want some hits and some fallbacks", st)
	}
}
