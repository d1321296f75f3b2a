// Package periodic runs a daemon's background work on a clock: the
// in-flight sweep, the spool, status polling, the activity sampler.
package periodic

import (
	"context"
	"time"
)

// Run calls f at once, then every d until ctx ends. f runs in the calling
// goroutine; ticks missed while it runs are dropped (time.Ticker's
// behaviour), so a slow call delays the next one and calls never queue up.
func Run(ctx context.Context, d time.Duration, f func()) {
	if ctx.Err() != nil {
		return
	}
	f()
	Every(ctx, d, f)
}

// Every calls f every d until ctx ends, the first time after d, as Run
// does after its first call.
func Every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
