package rawtrace

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestDefaultDeliveryIsTheFlagDefaults(t *testing.T) {
	got := DefaultDelivery()
	if got.BreakerFailures < 1 || got.BreakerProbe <= 0 || got.BackoffMin <= 0 || got.BackoffMax < got.BackoffMin {
		t.Errorf("got %+v; want the positive defaults of the events.* flags", got)
	}
	var c Config
	c.BreakerFailures, c.BreakerProbe, c.BackoffMin, c.BackoffMax = got.BreakerFailures, got.BreakerProbe, got.BackoffMin, got.BackoffMax
	if c.Delivery() != got {
		t.Errorf("Config.Delivery() = %+v; want %+v", c.Delivery(), got)
	}
}

func TestBreakerExported(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	b := Delivery{BreakerFailures: 2, BreakerProbe: time.Minute}.NewBreaker()
	if b.Failure(now) || b.Open() || b.Failed() != 1 {
		t.Fatalf("after one failure: open %v, failed %d; want closed, 1", b.Open(), b.Failed())
	}
	if !b.Failure(now) || !b.Open() {
		t.Fatal("the second failure did not open the breaker")
	}
	if got := b.Wait(now); got != time.Minute {
		t.Errorf("wait = %s; want 1m", got)
	}
	if !b.Success() || b.Open() || b.Failed() != 0 {
		t.Error("a success did not close the breaker")
	}
}

func TestAuthHeader(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"basic", "user:pa:ss\n", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pa:ss"))},
		{"bearer", "  tok3n  \nsecond line\n", "Bearer tok3n"},
		{"empty", "\nuser:pass\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "auth")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := AuthHeader(path)
			if tc.want == "" {
				if err == nil {
					t.Errorf("got %q; want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
