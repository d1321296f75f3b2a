package pushgw

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/bitville/bitville-apm/internal/push"
)

// DefaultTTLFactor times an instance's push interval is how long its series
// live without a newer push, unless the gateway sets one TTL for all.
const DefaultTTLFactor = 3

// defaultInterval is the push interval assumed when a push does not say; it
// equals the default of the pushing daemons' --push.interval.
const defaultInterval = 15 * time.Second

// forgetAfter is how long after its last push an instance is forgotten:
// its bitville_pushgw_instance_up 0 disappears, and with it what Apply
// remembers to tell a duplicate or stale push.
const forgetAfter = time.Hour

// Outcome says what Apply did with a snapshot.
type Outcome string

// Outcomes of Apply.
const (
	Applied   Outcome = "applied"   // the instance's series are now the snapshot's
	Duplicate Outcome = "duplicate" // a batch of this run already applied; nothing changed
	Stale     Outcome = "stale"     // gathered before the applied snapshot; nothing changed
)

// InstanceInfo describes one pushing instance the Store remembers.
type InstanceInfo struct {
	Project, Job, Instance string
	Up                     bool      // its series are exposed: its last push is younger than its TTL
	LastPush               time.Time // when its last snapshot was applied
	Series                 int       // series exposed for it, 0 once expired
	Batch                  push.BatchID
}

// Store holds the last applied snapshot of every pushing instance (project,
// job, instance) and exposes their series.
//
// A Store is safe for concurrent use: Apply, Expire, WriteTo, Instances and
// ProjectSeries may be called from any goroutine at any time. Apply and
// Expire hold the Store's lock for a bounded amount of work per family;
// WriteTo holds it only to take the live snapshots, which are immutable, and
// writes them without it, so a slow reader of /metrics never blocks a push.
// The Store owns every snapshot passed to Apply from then on: the caller
// must not change it (nothing exported can). The results of Instances and
// ProjectSeries are fresh copies owned by the caller.
type Store struct {
	lim Limits
	ttl time.Duration

	mu            sync.RWMutex
	instances     map[instanceKey]*instance
	families      map[string]*familyInfo // of the live snapshots
	projectSeries map[string]int         // live series per project
}

type instanceKey struct{ project, job, instance string }

func (k instanceKey) compare(o instanceKey) int {
	return cmp.Or(cmp.Compare(k.project, o.project), cmp.Compare(k.job, o.job), cmp.Compare(k.instance, o.instance))
}

// instance is what the Store remembers of one pushing instance.
type instance struct {
	snap     *Snapshot // the live snapshot, nil once expired
	batch    push.BatchID
	gathered time.Time // Meta.Time of the last applied snapshot
	lastPush time.Time
	ttl      time.Duration
	series   int // of the last applied snapshot
}

// familyInfo is what the live snapshots agree on for one family name.
type familyInfo struct {
	typ     string
	help    string
	hasHelp bool
	holders int // live snapshots with this family
}

// NewStore returns an empty Store. ttl > 0 is how long every instance's
// series live after its last push; 0 means DefaultTTLFactor × the
// instance's push interval.
func NewStore(lim Limits, ttl time.Duration) *Store {
	return &Store{
		lim:           lim,
		ttl:           ttl,
		instances:     map[instanceKey]*instance{},
		families:      map[string]*familyInfo{},
		projectSeries: map[string]int{},
	}
}

// Apply makes snap the live snapshot of its instance, pushed at now, unless
// it is a duplicate or stale (then nothing changes). It refuses, changing
// nothing, a snapshot whose family has another type than a live instance's
// (400 type_conflict), or one that would take its project past
// MaxSeriesPerProject (413 series_limit); the instance's previous snapshot
// counts as replaced.
func (s *Store) Apply(snap *Snapshot, now time.Time) (Outcome, error) {
	key := instanceKey{snap.Meta.Project, snap.Meta.Job, snap.Meta.Instance}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[key]
	var old *Snapshot
	if in != nil {
		if snap.Meta.Batch.Boot == in.batch.Boot && snap.Meta.Batch.Seq <= in.batch.Seq {
			return Duplicate, nil
		}
		if snap.Meta.Time.Before(in.gathered) {
			return Stale, nil
		}
		old = in.snap
	}
	if err := s.checkTypes(snap, old); err != nil {
		return "", err
	}
	replaced := 0
	if old != nil {
		replaced = old.Series
	}
	if total := s.projectSeries[key.project] - replaced + snap.Series; total > s.lim.MaxSeriesPerProject {
		return "", tooLarge(ReasonSeriesLimit, fmt.Errorf("cannot apply %d series of instance %q: project %q would hold %d series, more than %d", snap.Series, key.instance, key.project, total, s.lim.MaxSeriesPerProject))
	}
	if old != nil {
		s.release(key.project, old)
	}
	s.hold(snap)
	if in == nil {
		in = &instance{}
		s.instances[key] = in
	}
	*in = instance{snap: snap, batch: snap.Meta.Batch, gathered: snap.Meta.Time, lastPush: now, ttl: s.instanceTTL(snap.Meta.Interval), series: snap.Series}
	return Applied, nil
}

// checkTypes refuses snap if one of its families has another type in a live
// snapshot other than old, the one snap replaces.
func (s *Store) checkTypes(snap, old *Snapshot) error {
	j := 0 // walks old's families, sorted like snap's
	for i := range snap.families {
		f := &snap.families[i]
		info := s.families[f.name]
		if info == nil || info.typ == f.typ {
			continue
		}
		others := info.holders
		if old != nil {
			for j < len(old.families) && old.families[j].name < f.name {
				j++
			}
			if j < len(old.families) && old.families[j].name == f.name {
				others--
			}
		}
		if others > 0 {
			return invalid(ReasonTypeConflict, fmt.Errorf("cannot apply family %q of instance %q as %s: live instances hold it as %s", f.name, snap.Meta.Instance, f.typ, info.typ))
		}
	}
	return nil
}

// hold counts snap's families and series as live.
func (s *Store) hold(snap *Snapshot) {
	for i := range snap.families {
		f := &snap.families[i]
		info := s.families[f.name]
		if info == nil {
			info = &familyInfo{typ: f.typ}
			s.families[f.name] = info
		}
		info.typ = f.typ // the same unless every holder was the one replaced
		if !info.hasHelp && f.hasHelp {
			info.help, info.hasHelp = f.help, true
		}
		info.holders++
	}
	s.projectSeries[snap.Meta.Project] += snap.Series
}

// release undoes hold.
func (s *Store) release(project string, snap *Snapshot) {
	for i := range snap.families {
		name := snap.families[i].name
		if info := s.families[name]; info != nil {
			if info.holders--; info.holders <= 0 {
				delete(s.families, name)
			}
		}
	}
	if s.projectSeries[project] -= snap.Series; s.projectSeries[project] <= 0 {
		delete(s.projectSeries, project)
	}
}

func (s *Store) instanceTTL(interval time.Duration) time.Duration {
	if s.ttl > 0 {
		return s.ttl
	}
	if interval <= 0 {
		interval = defaultInterval
	}
	return DefaultTTLFactor * interval
}

// Expire drops the series of every instance whose last push is older than
// its TTL at now, and forgets the instances whose last push is older than
// forgetAfter (or than their TTL, when that is longer).
func (s *Store) Expire(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, in := range s.instances {
		age := now.Sub(in.lastPush)
		if in.snap != nil && age > in.ttl {
			s.release(key.project, in.snap)
			in.snap = nil
		}
		if in.snap == nil && age > forgetAfter {
			delete(s.instances, key)
		}
	}
}

// Instances describes every instance the Store remembers, sorted by
// project, job and instance.
func (s *Store) Instances() []InstanceInfo {
	s.mu.RLock()
	out := make([]InstanceInfo, 0, len(s.instances))
	for key, in := range s.instances {
		info := InstanceInfo{Project: key.project, Job: key.job, Instance: key.instance, Up: in.snap != nil, LastPush: in.lastPush, Batch: in.batch}
		if in.snap != nil {
			info.Series = in.series
		}
		out = append(out, info)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b InstanceInfo) int {
		return instanceKey{a.Project, a.Job, a.Instance}.compare(instanceKey{b.Project, b.Job, b.Instance})
	})
	return out
}

// ProjectSeries returns the number of live series of each project.
func (s *Store) ProjectSeries() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.projectSeries))
	for p, n := range s.projectSeries {
		out[p] = n
	}
	return out
}
