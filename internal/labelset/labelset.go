// Package labelset bounds the values of one label dimension, the way every
// series of the metric contract is bounded (DESIGN.md, "Every label set is
// bounded"): the first values get an entry of their own up to a limit, later
// ones are counted under an overflow value ("other") and the overflow is
// counted; each entry remembers when it was last used, and entries idle for
// longer than a cutoff are removed, together with whatever series the caller
// keeps for them.
//
// A dimension is declared once, with its limit, its overflow key, its
// counters and two hooks, and then costs one call per use:
//
//	endpoints := labelset.New(labelset.Options[string, *series]{
//		Limit:    500,
//		Overflow: labelset.Other,
//		New:      func(name string) *series { ... create the series ... },
//		Delete:   func(name string, s *series) { ... delete the series ... },
//	})
//	name, s := endpoints.Get(m.Endpoint, now)
package labelset

import (
	"iter"
	"time"
)

// OtherValue is the label value that stands for every value past a limit.
const OtherValue = "other"

// Other is the Overflow of a dimension with string keys: every value past
// the limit is counted as "other".
func Other(string) string { return OtherValue }

// Counter is what the set counts overflows and expiries with; a
// prometheus.Counter is one.
type Counter interface{ Inc() }

// Options declare a dimension.
type Options[K comparable, V any] struct {
	// Limit is how many keys may have an entry of their own. Overflow
	// keys do not count against it.
	Limit int
	// Overflow (required) returns the key that stands for k once the
	// limit is reached. A key that is its own overflow (Overflow(k) == k) is an
	// overflow key: it always gets an entry. For composite keys it can
	// keep the parts that are already bounded elsewhere, e.g. an
	// (endpoint, query) pair becomes (endpoint, "other").
	Overflow func(K) K
	// New creates the value of a key getting an entry (its series).
	New func(K) V
	// Delete, if set, is called for each entry removed by Expire or
	// Clear (to delete its series).
	Delete func(K, V)
	// Overflowed and Expired, if set, count keys sent to their overflow
	// key and entries removed by Expire.
	Overflowed, Expired Counter
}

type entry[V any] struct {
	v        V
	lastSeen time.Time
}

// Set is one bounded label dimension. It is not safe for concurrent use:
// its owner holds the lock that guards the series it creates.
type Set[K comparable, V any] struct {
	o       Options[K, V]
	entries map[K]*entry[V]
	own     int // entries that count against the limit
}

// New returns an empty set.
func New[K comparable, V any](o Options[K, V]) *Set[K, V] {
	return &Set[K, V]{o: o, entries: make(map[K]*entry[V])}
}

// Get returns the key k is counted under (k itself, or its overflow key
// past the limit) and that key's value, creating the entry if needed, and
// marks it used at now.
func (s *Set[K, V]) Get(k K, now time.Time) (K, V) {
	e, ok := s.entries[k]
	if !ok {
		over := s.o.Overflow(k)
		isOver := over == k
		if !isOver && s.own >= s.o.Limit {
			if s.o.Overflowed != nil {
				s.o.Overflowed.Inc()
			}
			k, isOver = over, true
			e = s.entries[k]
		}
		if e == nil {
			e = &entry[V]{v: s.o.New(k)}
			s.entries[k] = e
			if !isOver {
				s.own++
			}
		}
	}
	e.lastSeen = now
	return k, e.v
}

// Lookup returns the value of k without creating or touching it.
func (s *Set[K, V]) Lookup(k K) (V, bool) {
	e, ok := s.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Expire removes the entries last used before cutoff, except those keep
// (if set) says to keep, calling Delete for each, and returns how many it
// removed.
func (s *Set[K, V]) Expire(cutoff time.Time, keep func(K, V) bool) int {
	n := 0
	for k, e := range s.entries {
		if !e.lastSeen.Before(cutoff) || (keep != nil && keep(k, e.v)) {
			continue
		}
		s.remove(k, e)
		if s.o.Expired != nil {
			s.o.Expired.Inc()
		}
		n++
	}
	return n
}

// Clear removes every entry, calling Delete for each.
func (s *Set[K, V]) Clear() {
	for k, e := range s.entries {
		s.remove(k, e)
	}
}

func (s *Set[K, V]) remove(k K, e *entry[V]) {
	delete(s.entries, k)
	if s.o.Overflow(k) != k {
		s.own--
	}
	if s.o.Delete != nil {
		s.o.Delete(k, e.v)
	}
}

// Len is the number of entries, overflow keys included.
func (s *Set[K, V]) Len() int { return len(s.entries) }

// All yields every entry, in no particular order. The loop must not add or
// remove entries.
func (s *Set[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, e := range s.entries {
			if !yield(k, e.v) {
				return
			}
		}
	}
}
