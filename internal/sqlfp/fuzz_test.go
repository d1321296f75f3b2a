package sqlfp

import (
	"testing"
	"unicode/utf8"
)

func FuzzFingerprint(f *testing.F) {
	for _, s := range []string{
		"",
		"SELECT * FROM t WHERE id = 42",
		"SELECT * FROM t WHERE id = $1 /*endpoint='GET%20%2Forders'*/",
		"SELECT a FROM t WHERE x = 'abc",
		"SELECT * FROM orders WHERE id IN (1,2,3",
		"INSERT INTO `t` (`a`) VALUES (1,'x'),(2,'y'),(",
		"SELECT $tag$ x $tag$, E'\\'', U&'d\\0061', x'1F', 0x1F, -1.5e-3, ?, :name, a::int, a[1:2]",
		"/* /* nested */ -- \n",
		"SELECT \"unterminated",
		"((((((((((((((((((((",
		"SELECT 'é', \"ß\" FROM t -- ü",
		"SELECT * FROM caf\xc3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		r := Fingerprint(sql)
		if !isHex16(r.Fingerprint) {
			t.Fatalf("Fingerprint = %q; want 16 lower-case hex characters", r.Fingerprint)
		}
		if len(r.Normalized) > MaxNormalizedLen+len(truncMark) {
			t.Fatalf("len(Normalized) = %d; want <= %d", len(r.Normalized), MaxNormalizedLen+len(truncMark))
		}
		if !utf8.ValidString(r.Normalized) {
			t.Fatalf("Normalized = %q is not valid UTF-8", r.Normalized)
		}
		if again := Fingerprint(sql); again != r {
			t.Fatalf("second call = %+v; want %+v (deterministic)", again, r)
		}
		// On anything PostgreSQL accepts, the tokenizer must see comments
		// exactly where PostgreSQL's scanner does.
		checkCleanMatchesScan(t, sql)
		// The fallback must be total on its own too, including on texts
		// pg_query accepts.
		fb := fallback(sql, lex(nil, sql, lenient))
		if !isHex16(fb.Fingerprint) || len(fb.Normalized) > MaxNormalizedLen+len(truncMark) {
			t.Fatalf("fallback = %+v; want a valid Result", fb)
		}
		if !utf8.ValidString(fb.Normalized) {
			t.Fatalf("fallback Normalized = %q is not valid UTF-8", fb.Normalized)
		}
	})
}
