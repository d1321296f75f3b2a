package pushgw

import (
	"testing"

	"github.com/bitville/bitville-apm/internal/flagdefaults"
)

// newTestSnapshot parses text (the exposition format, as pushed) as a push
// of meta taken at meta.Time.
func newTestSnapshot(t testing.TB, meta Meta, text string) *Snapshot {
	t.Helper()
	var lim Limits
	if err := flagdefaults.Apply(&lim); err != nil {
		t.Fatal(err)
	}
	if meta.Batch.Boot == "" {
		meta.Batch.Boot, meta.Batch.Seq = "0123456789abcdef", 1
	}
	snap, err := Parse([]byte(text), meta, lim, meta.Time)
	if err != nil {
		t.Fatalf("cannot parse the test snapshot: %v", err)
	}
	return snap
}
