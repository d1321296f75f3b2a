package periodic_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/periodic"
)

func TestRunCallsAtOnceThenEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		periodic.Run(ctx, 10*time.Millisecond, func() {
			if n.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after ctx ended")
	}
	if got := n.Load(); got != 3 {
		t.Errorf("got %d calls; want 3 (stopped by the third)", got)
	}
}

func TestEveryWaitsFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	go func() { periodic.Every(ctx, time.Hour, func() { n.Add(1) }); close(done) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	if got := n.Load(); got != 0 {
		t.Errorf("got %d calls before the first period; want 0", got)
	}
	// A context that has ended runs nothing, not even Run's first call.
	periodic.Run(ctx, time.Millisecond, func() { n.Add(1) })
	if got := n.Load(); got != 0 {
		t.Errorf("Run on an ended context called f %d times", got)
	}
}
