package labelset_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/labelset"
)

type count int

func (c *count) Inc() { *c++ }

func TestGetBoundsAndOverflows(t *testing.T) {
	var overflowed, expired count
	var created, deleted []string
	s := labelset.New(labelset.Options[string, string]{
		Limit:      2,
		Overflow:   labelset.Other,
		New:        func(k string) string { created = append(created, k); return "series of " + k },
		Delete:     func(k, _ string) { deleted = append(deleted, k) },
		Overflowed: &overflowed,
		Expired:    &expired,
	})
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct{ in, want string }{
		{"a", "a"}, {"b", "b"}, {"a", "a"}, {"c", "other"}, {"d", "other"}, {"other", "other"}, {"b", "b"},
	} {
		got, v := s.Get(tc.in, t0)
		if got != tc.want || v != "series of "+tc.want {
			t.Errorf("Get(%q) = %q, %q; want %q, %q", tc.in, got, v, tc.want, "series of "+tc.want)
		}
	}
	if want := []string{"a", "b", "other"}; !slices.Equal(created, want) {
		t.Errorf("created %v; want %v", created, want)
	}
	if overflowed != 2 {
		t.Errorf("overflowed %d; want 2 (c and d, not the literal other)", overflowed)
	}
	if s.Len() != 3 {
		t.Errorf("Len %d; want 3", s.Len())
	}

	// a is used later than the others: only it survives the cutoff.
	s.Get("a", t0.Add(time.Minute))
	if n := s.Expire(t0.Add(time.Second), nil); n != 2 {
		t.Errorf("Expire removed %d; want 2", n)
	}
	slices.Sort(deleted)
	if want := []string{"b", "other"}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v; want %v", deleted, want)
	}
	if expired != 2 {
		t.Errorf("expired %d; want 2", expired)
	}
	// Expiry frees room under the limit: c now gets its own entry.
	if got, _ := s.Get("c", t0.Add(time.Minute)); got != "c" {
		t.Errorf("after expiry Get(c) = %q; want c", got)
	}
	if got, _ := s.Get("d", t0.Add(time.Minute)); got != "other" {
		t.Errorf("at the limit again Get(d) = %q; want other", got)
	}
}

func TestExpireKeeps(t *testing.T) {
	s := labelset.New(labelset.Options[string, int]{Limit: 10, Overflow: labelset.Other, New: func(string) int { return 0 }})
	t0 := time.Unix(1000, 0)
	s.Get("busy", t0)
	s.Get("idle", t0)
	n := s.Expire(t0.Add(time.Hour), func(k string, _ int) bool { return k == "busy" })
	if n != 1 {
		t.Fatalf("Expire removed %d; want 1", n)
	}
	if _, ok := s.Lookup("busy"); !ok {
		t.Error("busy was removed although keep said to keep it")
	}
	if _, ok := s.Lookup("idle"); ok {
		t.Error("idle was kept")
	}
}

func TestCompositeOverflowKeepsBoundedPart(t *testing.T) {
	type pair [2]string
	s := labelset.New(labelset.Options[pair, int]{
		Limit:    1,
		Overflow: func(k pair) pair { return pair{k[0], labelset.OtherValue} },
		New:      func(pair) int { return 0 },
	})
	now := time.Now()
	s.Get(pair{"/a", "q1"}, now)
	if got, _ := s.Get(pair{"/b", "q2"}, now); got != (pair{"/b", "other"}) {
		t.Errorf("Get = %v; want [/b other]", got)
	}
	if got, _ := s.Get(pair{"/c", "other"}, now); got != (pair{"/c", "other"}) {
		t.Errorf("an overflow key must always get its entry; got %v", got)
	}
	var keys []string
	for k := range s.All() {
		keys = append(keys, k[0]+" "+k[1])
	}
	slices.Sort(keys)
	if want := []string{"/a q1", "/b other", "/c other"}; !slices.Equal(keys, want) {
		t.Errorf("All = %v; want %v", keys, want)
	}
}

func TestClear(t *testing.T) {
	deleted := 0
	s := labelset.New(labelset.Options[string, int]{Limit: 1, Overflow: labelset.Other,
		New: func(string) int { return 0 }, Delete: func(string, int) { deleted++ }})
	s.Get("a", time.Now())
	s.Get("b", time.Now())
	s.Clear()
	if s.Len() != 0 || deleted != 2 {
		t.Errorf("after Clear: Len %d, deleted %d; want 0, 2", s.Len(), deleted)
	}
	if got, _ := s.Get("b", time.Now()); got != "b" {
		t.Errorf("after Clear the limit is free again; Get(b) = %q", got)
	}
}

func Example() {
	requests := map[string]int{}
	endpoints := labelset.New(labelset.Options[string, string]{
		Limit:    2,
		Overflow: labelset.Other,
		New:      func(name string) string { return name },
	})
	for _, e := range []string{"/", "/orders/{id}", "/search", "/"} {
		name, _ := endpoints.Get(e, time.Now())
		requests[name]++
	}
	fmt.Println(requests["/"], requests["/orders/{id}"], requests["other"])
	// Output: 2 1 1
}
