package fpm

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"
)

// PoolView is one pool in /api/v1/fpm.
type PoolView struct {
	URI           string    `json:"uri"`
	Pool          string    `json:"pool"` // the label value of its metrics
	Up            bool      `json:"up"`
	Error         string    `json:"error,omitempty"`
	ReadAt        time.Time `json:"read_at"`
	ReadSeconds   float64   `json:"read_seconds"`
	Status        *Status   `json:"status,omitempty"` // workers: running first, longest first
	LongRunning   int       `json:"long_running"`
	LongThreshold float64   `json:"long_running_threshold_seconds"`
}

// Pools reads (or reuses) every pool's status for /api/v1/fpm. Running
// workers come first, longest running first.
func (m *Monitor) Pools(ctx context.Context) []PoolView {
	reads := m.readAll(ctx)
	labels := m.labels()
	out := make([]PoolView, len(reads))
	for i, r := range reads {
		v := PoolView{URI: m.pools[i].target.URI, Pool: labels[i], Up: r.err == nil, ReadAt: r.at,
			ReadSeconds: r.duration.Seconds(), LongThreshold: m.longRequest.Seconds()}
		if r.err != nil {
			v.Error = r.err.Error()
		} else {
			s := r.status
			s.Workers = slices.Clone(s.Workers)
			slices.SortStableFunc(s.Workers, func(x, y Worker) int {
				if x.Running() != y.Running() {
					if x.Running() {
						return -1
					}
					return 1
				}
				if c := cmp.Compare(y.RequestSeconds, x.RequestSeconds); c != 0 {
					return c
				}
				return x.PID - y.PID
			})
			for _, w := range s.Workers {
				if w.Running() && w.duration >= m.longRequest {
					v.LongRunning++
				}
			}
			v.Status = &s
		}
		out[i] = v
	}
	return out
}

// SlowlogView is one followed slowlog in /api/v1/fpm.
type SlowlogView struct {
	Path    string `json:"path"`
	Entries uint64 `json:"entries"`
	Rotated uint64 `json:"rotations"`
	Offset  int64  `json:"offset"`
	Error   string `json:"error,omitempty"`
}

// slowlogState is what the API shows of each follower, updated after each
// poll.
type slowlogState struct {
	mu    sync.Mutex
	views []SlowlogView
}

// Slowlogs returns the state of each followed slowlog.
func (m *Monitor) Slowlogs() []SlowlogView {
	st := &m.slowState
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.views) == 0 {
		out := make([]SlowlogView, len(m.cfg.Slowlogs))
		for i, p := range m.cfg.Slowlogs {
			out[i] = SlowlogView{Path: p, Error: "not polled yet"}
		}
		return out
	}
	return append([]SlowlogView(nil), st.views...)
}

// Handler serves /api/v1/fpm: the pools, read now or up to cacheTTL ago,
// and the followed slowlogs.
func (m *Monitor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pools := m.Pools(r.Context())
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"time": m.now().UTC().Format(time.RFC3339Nano), "pools": pools, "slowlogs": m.Slowlogs()})
	})
}
