package pushgw

// Stand-in for the snapshot types of snapshot.go and parse.go, so that
// the remote writer compiles and is tested before they exist. Delete this
// file and remotewrite_standin_test.go when snapshot.go lands.

import (
	"time"

	"github.com/bitville/bitville-apm/internal/push"
)

type Meta struct {
	Project, Job, Instance string
	Batch                  push.BatchID
	Time                   time.Time
	Interval               time.Duration
}

type Label struct{ Name, Value string }

type Snapshot struct {
	Meta      Meta
	Series    int
	Rewritten int
	samples   []standinSample
}

type standinSample struct {
	labels []Label
	value  float64
}

func (s *Snapshot) EachSample(fn func(labels []Label, value float64)) {
	for _, x := range s.samples {
		fn(x.labels, x.value)
	}
}
