package sqlfp

import "testing"

func TestFingerprintTruncated(t *testing.T) {
	full := "SELECT a, b FROM orders WHERE id = 1 AND status = 'paid'"
	// Cut where the text still parses as another statement: pg_query would
	// fingerprint the shorter statement; the truncated path must not.
	cut := "SELECT a, b FROM orders WHERE id = 1 AND status"
	if Fingerprint(cut).Fallback {
		t.Fatalf("test premise: %q should parse", cut)
	}
	tr := FingerprintTruncated(cut)
	if !tr.Fallback {
		t.Errorf("got Fallback false; want the truncated path to use the fallback")
	}
	if tr.Fingerprint == Fingerprint(cut).Fingerprint || tr.Fingerprint == Fingerprint(full).Fingerprint {
		t.Errorf("got fingerprint %s equal to a parsed statement's", tr.Fingerprint)
	}
	if other := FingerprintTruncated("SELECT a, b FROM orders WHERE id = 77 AND status"); other.Fingerprint != tr.Fingerprint {
		t.Errorf("got %s for other literals; want %s", other.Fingerprint, tr.Fingerprint)
	}
	if got := FingerprintTruncated("  "); got.Fingerprint != EmptyFingerprint {
		t.Errorf("got %s for blank text; want %s", got.Fingerprint, EmptyFingerprint)
	}
}

func TestTruncatedCacheSeparate(t *testing.T) {
	text := "SELECT a FROM t WHERE x = 1"
	c, tc := NewCache(64), NewTruncatedCache(64)
	if c.LookupString(text).Fallback {
		t.Errorf("got Fallback from the normal cache for parseable SQL")
	}
	r := tc.LookupString(text)
	if !r.Fallback || r != tc.Lookup([]byte(text)) {
		t.Errorf("got %+v; want a fallback result, the same on the second lookup", r)
	}
	if st := tc.Stats(); st.Hits != 1 || st.Misses != 1 {
		t.Errorf("got %+v; want 1 hit 1 miss", st)
	}
	if n := testing.AllocsPerRun(100, func() { tc.LookupString(text) }); n != 0 {
		t.Errorf("got %v allocations on a hit; want 0", n)
	}
}
