package pushgw

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/bitville/bitville-apm/internal/push"
)

// mustParse parses body for instance with batch seq, gathered at at.
func mustParse(t testing.TB, body, instance string, seq uint64, at time.Time) *Snapshot {
	t.Helper()
	meta := testMeta(instance, seq)
	meta.Time = at
	snap, err := Parse([]byte(body), meta, testLimits(t), at)
	if err != nil {
		t.Fatalf("got %v parsing; want none", err)
	}
	return snap
}

func exposition(t testing.TB, s *Store) string {
	t.Helper()
	var b bytes.Buffer
	n, err := s.WriteTo(&b)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(b.Len()) {
		t.Errorf("got WriteTo count %d; want %d", n, b.Len())
	}
	return b.String()
}

func TestStoreApply(t *testing.T) {
	s := NewStore(testLimits(t), 0)
	apply := func(snap *Snapshot, at time.Time, want Outcome) {
		t.Helper()
		got, err := s.Apply(snap, at)
		if err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	t0 := testNow
	apply(mustParse(t, "# TYPE c counter\nc 10\n", "web-01", 1, t0), t0, Applied)
	apply(mustParse(t, "# TYPE c counter\nc 20\n", "web-01", 2, t0.Add(15*time.Second)), t0.Add(15*time.Second), Applied)
	apply(mustParse(t, "# TYPE c counter\nc 99\n", "web-01", 2, t0.Add(16*time.Second)), t0.Add(16*time.Second), Duplicate)
	apply(mustParse(t, "# TYPE c counter\nc 98\n", "web-01", 1, t0.Add(17*time.Second)), t0.Add(17*time.Second), Duplicate)
	if got, want := exposition(t, s), "# TYPE c counter\nc{job=\"agent\",instance=\"web-01\",project=\"shop\"} 20\n"; got != want {
		t.Errorf("got\n%s; want\n%s", got, want)
	}

	// A restart: another boot, the counter starts again lower.
	restart := mustParse(t, "# TYPE c counter\nc 1\n", "web-01", 1, t0.Add(30*time.Second))
	restart.Meta.Batch.Boot = "fedcba9876543210"
	apply(restart, t0.Add(30*time.Second), Applied)
	if got, want := exposition(t, s), "# TYPE c counter\nc{job=\"agent\",instance=\"web-01\",project=\"shop\"} 1\n"; got != want {
		t.Errorf("after a restart got\n%s; want\n%s", got, want)
	}

	// Stale: gathered before the applied snapshot, even with a newer batch.
	stale := mustParse(t, "# TYPE c counter\nc 0\n", "web-01", 2, t0.Add(20*time.Second))
	stale.Meta.Batch.Boot = "fedcba9876543210"
	apply(stale, t0.Add(31*time.Second), Stale)
	if got := exposition(t, s); !strings.Contains(got, "} 1\n") {
		t.Errorf("after a stale push got\n%s; want the value 1 kept", got)
	}
}

func TestStoreMergesInstances(t *testing.T) {
	s := NewStore(testLimits(t), 0)
	for i, in := range []string{"web-02", "web-01"} {
		body := "# HELP c Requests from " + in + ".\n# TYPE c counter\nc 1\n# TYPE g gauge\ng 2\n"
		if in == "web-01" {
			body += "a 3\n"
		}
		if _, err := s.Apply(mustParse(t, body, in, uint64(i+1), testNow), testNow); err != nil {
			t.Fatal(err)
		}
	}
	want := `a{job="agent",instance="web-01",project="shop"} 3` + "\n" +
		"# HELP c Requests from web-02.\n# TYPE c counter\n" +
		`c{job="agent",instance="web-01",project="shop"} 1` + "\n" +
		`c{job="agent",instance="web-02",project="shop"} 1` + "\n" +
		"# TYPE g gauge\n" +
		`g{job="agent",instance="web-01",project="shop"} 2` + "\n" +
		`g{job="agent",instance="web-02",project="shop"} 2` + "\n"
	if got := exposition(t, s); got != "# TYPE a untyped\n"+want {
		t.Errorf("got\n%s; want\n%s", got, "# TYPE a untyped\n"+want)
	}
}

func TestStoreExpire(t *testing.T) {
	tests := []struct {
		name     string
		ttl      time.Duration
		interval time.Duration
		wantTTL  time.Duration
	}{
		{"interval", 0, 10 * time.Second, 30 * time.Second},
		{"no interval", 0, 0, DefaultTTLFactor * defaultInterval},
		{"gateway ttl", 2 * time.Minute, 10 * time.Second, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(testLimits(t), tt.ttl)
			snap := mustParse(t, "a 1\n", "web-01", 1, testNow)
			snap.Meta.Interval = tt.interval
			if _, err := s.Apply(snap, testNow); err != nil {
				t.Fatal(err)
			}
			check := func(at time.Time, wantUp, wantKnown bool) {
				t.Helper()
				s.Expire(at)
				ins := s.Instances()
				if !wantKnown {
					if len(ins) != 0 {
						t.Errorf("at %s got %v; want the instance forgotten", at.Sub(testNow), ins)
					}
					return
				}
				if len(ins) != 1 || ins[0].Up != wantUp {
					t.Fatalf("at %s got %+v; want one instance up=%v", at.Sub(testNow), ins, wantUp)
				}
				want := InstanceInfo{Project: "shop", Job: "agent", Instance: "web-01", Up: wantUp, LastPush: testNow, Batch: push.BatchID{Boot: "0123456789abcdef", Seq: 1}}
				if wantUp {
					want.Series = 1
				}
				if ins[0] != want {
					t.Errorf("got %+v; want %+v", ins[0], want)
				}
				if got := strings.Contains(exposition(t, s), "a{"); got != wantUp {
					t.Errorf("at %s got series exposed %v; want %v", at.Sub(testNow), got, wantUp)
				}
				if got := s.ProjectSeries()["shop"]; (got == 1) != wantUp {
					t.Errorf("got %d project series; want %v", got, wantUp)
				}
			}
			check(testNow.Add(tt.wantTTL), true, true)
			check(testNow.Add(tt.wantTTL+time.Second), false, true)
			check(testNow.Add(forgetAfter), false, true)
			check(testNow.Add(forgetAfter+time.Second), false, false)
		})
	}
}

func TestStoreExpiredKeepsDuplicates(t *testing.T) {
	s := NewStore(testLimits(t), 0)
	if _, err := s.Apply(mustParse(t, "a 1\n", "web-01", 5, testNow), testNow); err != nil {
		t.Fatal(err)
	}
	s.Expire(testNow.Add(time.Minute))
	later := testNow.Add(2 * time.Minute)
	if got, err := s.Apply(mustParse(t, "a 1\n", "web-01", 5, later), later); got != Duplicate || err != nil {
		t.Errorf("got %q, %v for a batch applied before expiry; want duplicate", got, err)
	}
	if got, err := s.Apply(mustParse(t, "a 1\n", "web-01", 6, later), later); got != Applied || err != nil {
		t.Fatalf("got %q, %v; want applied", got, err)
	}
	if ins := s.Instances(); len(ins) != 1 || !ins[0].Up {
		t.Errorf("got %+v; want the instance up again", ins)
	}
}

func TestStoreTypeConflict(t *testing.T) {
	s := NewStore(testLimits(t), 0)
	if _, err := s.Apply(mustParse(t, "# TYPE m counter\nm 1\n", "web-01", 1, testNow), testNow); err != nil {
		t.Fatal(err)
	}
	before := exposition(t, s)
	_, err := s.Apply(mustParse(t, "# TYPE m gauge\nm 1\nother 1\n", "web-02", 1, testNow), testNow)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Status != http.StatusBadRequest || rej.Reason != ReasonTypeConflict {
		t.Fatalf("got %v; want a 400 type_conflict rejection", err)
	}
	if got := exposition(t, s); got != before {
		t.Errorf("after a refused push got\n%s; want unchanged\n%s", got, before)
	}
	if got := len(s.Instances()); got != 1 {
		t.Errorf("got %d instances; want 1", got)
	}
	// The instance's own previous snapshot does not conflict.
	if _, err := s.Apply(mustParse(t, "# TYPE m gauge\nm 1\n", "web-01", 2, testNow), testNow); err != nil {
		t.Errorf("got %v changing the type of one's own family; want none", err)
	}
	// Once the holder expires, the type is free.
	s.Expire(testNow.Add(time.Hour))
	if _, err := s.Apply(mustParse(t, "# TYPE m counter\nm 1\n", "web-02", 1, testNow.Add(time.Hour)), testNow.Add(time.Hour)); err != nil {
		t.Errorf("got %v after the holder expired; want none", err)
	}
}

func TestStoreSeriesLimit(t *testing.T) {
	lim := testLimits(t)
	lim.MaxSeriesPerProject = 3
	s := NewStore(lim, 0)
	if _, err := s.Apply(mustParse(t, "a 1\nb 1\n", "web-01", 1, testNow), testNow); err != nil {
		t.Fatal(err)
	}
	// Replacing one's own two series by three stays within 3.
	if _, err := s.Apply(mustParse(t, "a 1\nb 1\nc 1\n", "web-01", 2, testNow), testNow); err != nil {
		t.Fatalf("got %v; want the old snapshot counted as replaced", err)
	}
	_, err := s.Apply(mustParse(t, "a 1\n", "web-02", 1, testNow), testNow)
	var rej *Rejection
	if !errors.As(err, &rej) || rej.Status != http.StatusRequestEntityTooLarge || rej.Reason != ReasonSeriesLimit {
		t.Fatalf("got %v; want a 413 series_limit rejection", err)
	}
	other := mustParse(t, "a 1\n", "web-02", 1, testNow)
	other.Meta.Project = "other"
	if _, err := s.Apply(other, testNow); err != nil {
		t.Errorf("got %v for another project; want none", err)
	}
	if got, want := s.ProjectSeries(), map[string]int{"shop": 3, "other": 1}; len(got) != 2 || got["shop"] != want["shop"] || got["other"] != want["other"] {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestStoreConcurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewStore(testLimits(t), 0)
	body, err := os.ReadFile("testdata/agent.prom")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= 30 && ctx.Err() == nil; seq++ {
				at := testNow.Add(time.Duration(seq) * time.Second)
				snap := mustParse(t, string(body), "web-0"+string(rune('1'+w)), seq, at)
				if _, err := s.Apply(snap, at); err != nil {
					t.Error(err)
					return
				}
				s.Expire(at)
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 30 {
				if ctx.Err() != nil {
					return
				}
				var b bytes.Buffer
				if _, err := s.WriteTo(&b); err != nil {
					t.Error(err)
					return
				}
				p := expfmt.NewTextParser(model.LegacyValidation)
				if _, err := p.TextToMetricFamilies(&b); err != nil {
					t.Errorf("got %v reading the exposition; want none", err)
					return
				}
				s.Instances()
				s.ProjectSeries()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("timed out")
	}
}

// TestStorePromtool checks the exposition of several instances pushing a
// client_golang /metrics with promtool check metrics, lint included.
func TestStorePromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found (Debian package prometheus); cannot check the exposition with it")
	}
	body, err := os.ReadFile("testdata/agent.prom")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(testLimits(t), 0)
	for i, in := range []string{"web-02", "web-01", "db-01"} {
		if _, err := s.Apply(mustParse(t, string(body), in, uint64(i+1), testNow), testNow); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition(t, s))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("got promtool %v:\n%s", err, msg)
	}
}
