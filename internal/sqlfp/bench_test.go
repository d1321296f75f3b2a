package sqlfp

import (
	"fmt"
	"testing"
)

const benchSQL = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id " +
	"WHERE o.status = 'open' AND o.created_at > '2024-01-01' AND o.id IN (1, 2, 3, 4, 5) " +
	"ORDER BY o.created_at DESC LIMIT 50 /*endpoint='GET%20%2Forders',db_driver='pdo'*/"

// The same statement cut short, as the agent sends long statements.
const benchTruncated = "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id " +
	"WHERE o.status = 'open' AND o.created_at > '2024-01-01' AND o.id IN (1, 2, 3, 4, 5"

func BenchmarkFingerprint(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := Fingerprint(benchSQL); r.Fallback {
				b.Fatal("unexpected fallback")
			}
		}
	})
}

func BenchmarkFingerprintNoComment(b *testing.B) {
	const sql = "SELECT o.id, o.total FROM orders o WHERE o.status = 'open' AND o.id IN (1, 2, 3) LIMIT 50"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			Fingerprint(sql)
		}
	})
}

func BenchmarkFingerprintFallback(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := Fingerprint(benchTruncated); !r.Fallback {
				b.Fatal("expected fallback")
			}
		}
	})
}

// BenchmarkFallbackOnly measures the tokenizer without the failed pg_query
// attempt that precedes it in Fingerprint.
func BenchmarkFallbackOnly(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var toks []token
		for pb.Next() {
			toks = lex(toks[:0], benchTruncated, lenient)
			fallback(benchTruncated, toks)
		}
	})
}

func BenchmarkCacheLookupHit(b *testing.B) {
	c := NewCache(DefaultCacheEntries)
	keys := make([][]byte, 256)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("SELECT * FROM t%d WHERE id = $1 /*endpoint='GET%%20%%2Forders'*/", i))
		c.Lookup(keys[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Lookup(keys[i&255])
			i++
		}
	})
	if st := c.Stats(); st.Misses != uint64(len(keys)) {
		b.Fatalf("Stats() = %+v; want only the warm-up misses", st)
	}
}
