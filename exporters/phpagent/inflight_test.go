package phpagent

import (
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func startMsg(pid int, id, endpoint string, started time.Time) *protocol.Message {
	return &protocol.Message{Type: protocol.TypeStart, PID: pid, ID: id, Project: "shop", Method: "GET",
		Endpoint: endpoint, Started: float64(started.UnixNano()) / 1e9, TS: float64(started.UnixNano()) / 1e9}
}

func endMsg(pid int, id, endpoint string, started time.Time) *protocol.Message {
	return &protocol.Message{Type: protocol.TypeEnd, PID: pid, ID: id, Project: "shop", Method: "GET", Endpoint: endpoint, Status: 200,
		Started: float64(started.UnixNano()) / 1e9}
}

func TestInflightStartEnd(t *testing.T) {
	tab := NewInflightTable(10, 10*time.Second, time.Hour, 0, false)
	if old, err := tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t0); old != nil || err != nil {
		t.Fatalf("got abandoned %v, err %v; want neither", old, err)
	}
	if got := tab.Len(); got != 1 {
		t.Fatalf("got %d entries; want 1", got)
	}
	closed, old := tab.End(endMsg(1, "a", "GET /a", t0), t0)
	if closed == nil || closed.ID != "a" || old != nil {
		t.Fatalf("got closed %v abandoned %v; want closed a", closed, old)
	}
	if got := tab.Len(); got != 0 {
		t.Errorf("got %d entries after end; want 0", got)
	}
	if closed, old := tab.End(endMsg(1, "a", "GET /a", t0), t0); closed != nil || old != nil {
		t.Errorf("got %v %v for a repeated end; want nothing", closed, old)
	}
}

func TestInflightSupersede(t *testing.T) {
	tab := NewInflightTable(10, 10*time.Second, time.Hour, 0, false)
	tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t0)
	old, _ := tab.Start(startMsg(1, "b", "GET /b", t0.Add(time.Second)), "GET /b", t0.Add(time.Second))
	if old == nil || old.ID != "a" || old.Endpoint != "GET /a" {
		t.Fatalf("got abandoned %+v; want request a", old)
	}
	// A repeated start of the same request is not an abandonment.
	if old, _ := tab.Start(startMsg(1, "b", "GET /b", t0.Add(time.Second)), "GET /b", t0.Add(2*time.Second)); old != nil {
		t.Errorf("got abandoned %+v for a repeated start; want nil", old)
	}
	// An end for a later request of the pid closes nothing and abandons b.
	closed, old := tab.End(endMsg(1, "c", "GET /c", t0.Add(2*time.Second)), t0.Add(3*time.Second))
	if closed != nil || old == nil || old.ID != "b" {
		t.Errorf("got closed %v abandoned %v; want abandoned b", closed, old)
	}
}

// Several readers drain the socket, so one worker's messages can be handled
// out of order. None of the orders may leave a phantom request in flight or
// count a running request as abandoned.
func TestInflightReordered(t *testing.T) {
	t1 := t0.Add(time.Second)
	prog := &protocol.Message{Type: protocol.TypeProgress, PID: 1, ID: "a", Project: "shop",
		TS: float64(t0.Unix()) + 0.5, Elapsed: 0.5, Stack: []string{"{main}"}}
	orders := map[string][]string{
		"end before start":    {"end", "start", "progress"},
		"progress after end":  {"start", "end", "progress"},
		"end first, progress": {"end", "progress", "start"},
	}
	for name, order := range orders {
		tab := NewInflightTable(10, 10*time.Second, time.Hour, 0, false)
		for _, typ := range order {
			var old *InflightRequest
			switch typ {
			case "start":
				old, _ = tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t1)
			case "progress":
				old, _ = tab.Progress(prog, "GET /a", t1)
			case "end":
				_, old = tab.End(endMsg(1, "a", "GET /a", t0), t1)
			}
			if old != nil {
				t.Errorf("%s: %s abandoned %+v", name, typ, old)
			}
		}
		if n := tab.Len(); n != 0 {
			t.Errorf("%s: got %d in flight; want 0", name, n)
		}
	}

	// The next request b has started when a's end (or a late start or
	// progress of a) is handled: b stays in flight, nothing is abandoned.
	tab := NewInflightTable(10, 10*time.Second, time.Hour, 0, false)
	tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t1)
	tab.Start(startMsg(1, "b", "GET /b", t1), "GET /b", t1) // a's end lost so far: a is superseded
	tab2 := NewInflightTable(10, 10*time.Second, time.Hour, 0, false)
	tab2.Start(startMsg(1, "b", "GET /b", t1), "GET /b", t1)
	if old, _ := tab2.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t1); old != nil {
		t.Errorf("late start of a abandoned %+v", old)
	}
	if old, _ := tab2.Progress(prog, "GET /a", t1); old != nil {
		t.Errorf("late progress of a abandoned %+v", old)
	}
	if closed, old := tab2.End(endMsg(1, "a", "GET /a", t0), t1); closed != nil || old != nil {
		t.Errorf("late end of a: got closed %+v abandoned %+v; want neither", closed, old)
	}
	snap := tab2.Snapshot()
	if len(snap) != 1 || snap[0].ID != "b" || snap[0].Endpoint != "GET /b" || snap[0].Progress != 0 {
		t.Errorf("got %+v; want only b in flight, untouched", snap)
	}

	// Ended requests are forgotten after a while, so the map stays small.
	tab.End(endMsg(1, "b", "GET /b", t1), t1)
	tab.Sweep(t1.Add(endedKeep + time.Second))
	if n := len(tab.ended); n != 0 {
		t.Errorf("got %d remembered ends after the sweep; want 0", n)
	}
}

func TestInflightProgress(t *testing.T) {
	tab := NewInflightTable(10, 10*time.Second, time.Hour, 0, false)
	p := &protocol.Message{Type: protocol.TypeProgress, PID: 3, ID: "x", Project: "shop",
		TS: float64(t0.Unix()) + 12, Elapsed: 12, Stack: []string{"{main}", "slow"}, Memory: 1 << 20}
	// The start was lost: progress opens the entry, started from ts - elapsed.
	if old, err := tab.Progress(p, "GET /slow", t0.Add(12*time.Second)); old != nil || err != nil {
		t.Fatalf("got %v %v", old, err)
	}
	snap := tab.Snapshot()
	if len(snap) != 1 || !snap[0].Started.Equal(t0) || snap[0].Endpoint != "GET /slow" || len(snap[0].Stack) != 2 || snap[0].Progress != 1 {
		t.Fatalf("got %+v; want one entry started at %v with the stack", snap, t0)
	}
	p.Stack = []string{"{main}", "slower", "slowest"}
	tab.Progress(p, "", t0.Add(13*time.Second))
	snap = tab.Snapshot()
	if got := snap[0].Stack; len(got) != 3 || got[2] != "slowest" || snap[0].Endpoint != "GET /slow" {
		t.Errorf("got stack %q endpoint %q; want the latest stack and the earlier endpoint", got, snap[0].Endpoint)
	}
}

func TestInflightSweep(t *testing.T) {
	alive := map[int]bool{1: true, 2: true, 3: true}
	tab := NewInflightTable(10, 10*time.Second, time.Minute, 0, true)
	tab.alive = func(pid int) bool { return alive[pid] }
	tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t0)
	tab.Start(startMsg(2, "b", "GET /b", t0), "GET /b", t0)
	tab.Start(startMsg(3, "c", "GET /c", t0), "GET /c", t0.Add(50*time.Second))

	ab, long := tab.Sweep(t0.Add(5 * time.Second))
	if len(ab) != 0 || len(long) != 0 {
		t.Fatalf("got %v %v at 5s; want nothing", ab, long)
	}
	ab, long = tab.Sweep(t0.Add(11 * time.Second))
	if len(ab) != 0 || len(long) != 3 {
		t.Fatalf("got %d abandoned %d long at 11s; want 0 and 3", len(ab), len(long))
	}
	if _, long = tab.Sweep(t0.Add(12 * time.Second)); len(long) != 0 {
		t.Errorf("got %d long again; want each reported once", len(long))
	}
	counts := tab.Counts(t0.Add(12 * time.Second))
	if c := counts[endpointKey{"shop", "GET /a"}]; c.InFlight != 1 || c.LongRunning != 1 {
		t.Errorf("got counts %+v for /a; want 1 in flight, 1 long running", c)
	}

	delete(alive, 2) // worker 2 was killed
	ab, _ = tab.Sweep(t0.Add(20 * time.Second))
	if len(ab) != 0 || tab.Len() != 2 {
		t.Fatalf("got %+v abandoned, %d in flight; want b held until the next sweep, a and c in flight", ab, tab.Len())
	}
	ab, _ = tab.Sweep(t0.Add(21 * time.Second))
	if len(ab) != 1 || ab[0].Request.ID != "b" || ab[0].Reason != AbandonPIDGone {
		t.Fatalf("got %+v; want b abandoned as %s", ab, AbandonPIDGone)
	}
	// a was last heard of at t0, c at t0+50s: at t0+61s only a is too old.
	ab, _ = tab.Sweep(t0.Add(61 * time.Second))
	if len(ab) != 1 || ab[0].Request.ID != "a" || ab[0].Reason != AbandonExpired {
		t.Fatalf("got %+v; want a abandoned as %s", ab, AbandonExpired)
	}
	if tab.Len() != 1 {
		t.Errorf("got %d entries; want 1 (c)", tab.Len())
	}
}

// A process that sends its end and exits (a CLI script, a worker at
// pm.max_requests) may be seen gone by a sweep while the end still waits in
// the socket: the end that comes after closes the request, which is not
// abandoned, and a progress handled late does not reopen it.
func TestInflightPIDGoneBeforeItsEnd(t *testing.T) {
	alive := map[int]bool{7: true}
	tab := NewInflightTable(10, 10*time.Second, time.Minute, 0, true)
	tab.alive = func(pid int) bool { return alive[pid] }
	tab.Start(startMsg(7, "cli", "CLI bin/reindex.php", t0), "CLI bin/reindex.php", t0)
	delete(alive, 7) // the script sent its end and exited
	if ab, _ := tab.Sweep(t0.Add(time.Second)); len(ab) != 0 {
		t.Fatalf("got %+v abandoned at the sweep that saw the pid gone; want it held", ab)
	}
	if tab.Len() != 0 {
		t.Errorf("got %d in flight; want 0 (its process is gone)", tab.Len())
	}
	if old, err := tab.Progress(&protocol.Message{Type: protocol.TypeProgress, Project: "shop", ID: "cli", PID: 7,
		TS: float64(t0.Add(500*time.Millisecond).UnixNano()) / 1e9, Elapsed: 0.5, Stack: []string{"main"}}, "", t0.Add(1100*time.Millisecond)); old != nil || err != nil || tab.Len() != 0 {
		t.Errorf("a late progress: got %v %v and %d in flight; want it ignored", old, err, tab.Len())
	}
	closed, ab := tab.End(endMsg(7, "cli", "CLI bin/reindex.php", t0), t0.Add(1200*time.Millisecond))
	if closed == nil || closed.ID != "cli" || ab != nil {
		t.Fatalf("got closed %+v, abandoned %+v; want the request closed by its late end", closed, ab)
	}
	if ab, _ := tab.Sweep(t0.Add(2 * time.Second)); len(ab) != 0 {
		t.Errorf("got %+v abandoned after its end came; want none", ab)
	}
}

func TestInflightFull(t *testing.T) {
	tab := NewInflightTable(2, time.Second, time.Hour, 0, false)
	tab.Start(startMsg(1, "a", "x", t0), "x", t0)
	tab.Start(startMsg(2, "b", "x", t0), "x", t0)
	if _, err := tab.Start(startMsg(3, "c", "x", t0), "x", t0); err != ErrInflightFull {
		t.Fatalf("got %v; want ErrInflightFull", err)
	}
	// A pid already in the table can still start its next request.
	if old, err := tab.Start(startMsg(1, "d", "x", t0), "x", t0); err != nil || old == nil {
		t.Errorf("got %v %v; want a superseded, no error", old, err)
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(1) {
		t.Errorf("got pid 1 not alive; want alive (EPERM or not, it exists)")
	}
	if processAlive(1<<22 + 12345) {
		t.Errorf("got an impossible pid alive")
	}
}

// What the spool changes: ends arrive late (taken from the spool after the
// worker's next start) or early (before their own start, still queued on
// the socket), and neither may abandon a request that finished, leave a
// phantom in flight, or count anything twice.
func TestInflightLateAndEarlyEnds(t *testing.T) {
	const grace = 10 * time.Second
	t1 := t0.Add(time.Second)
	t2 := t1.Add(time.Second)

	// Late: a superseded by b, a's end within the grace period closes a.
	tab := NewInflightTable(10, 10*time.Second, time.Hour, grace, false)
	tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t0)
	if old, _ := tab.Start(startMsg(1, "b", "GET /b", t1), "GET /b", t1); old != nil {
		t.Errorf("b's start abandoned %+v at once; want a kept for the grace period", old)
	}
	if closed, old := tab.End(endMsg(1, "a", "GET /a", t0), t2); closed == nil || closed.ID != "a" || old != nil {
		t.Errorf("a's late end: got closed %+v abandoned %+v; want a closed", closed, old)
	}
	if ab, _ := tab.Sweep(t1.Add(grace)); len(ab) != 0 {
		t.Errorf("after a's late end the sweep abandoned %+v", ab)
	}
	if snap := tab.Snapshot(); len(snap) != 1 || snap[0].ID != "b" {
		t.Errorf("got %+v in flight; want b", snap)
	}

	// Late end that never comes: abandoned once the grace period is over.
	tab = NewInflightTable(10, 10*time.Second, time.Hour, grace, false)
	tab.Start(startMsg(1, "a", "GET /a", t0), "GET /a", t0)
	tab.Start(startMsg(1, "b", "GET /b", t1), "GET /b", t1)
	if ab, _ := tab.Sweep(t1.Add(grace - time.Millisecond)); len(ab) != 0 {
		t.Errorf("abandoned %+v within the grace period", ab)
	}
	if ab, _ := tab.Sweep(t1.Add(grace)); len(ab) != 1 || ab[0].Request.ID != "a" || ab[0].Reason != AbandonSuperseded {
		t.Errorf("after the grace period: got %+v; want a abandoned as superseded", ab)
	}
	if closed, _ := tab.End(endMsg(1, "a", "GET /a", t0), t1.Add(grace+time.Second)); closed != nil {
		t.Errorf("an end after the grace period closed %+v; want nothing (a was abandoned)", closed)
	}

	// Early: a's end (from the spool), then b's end, then a's and b's
	// starts from the socket: nothing opens.
	tab = NewInflightTable(10, 10*time.Second, time.Hour, grace, false)
	tab.End(endMsg(1, "a", "GET /a", t0), t2)
	tab.End(endMsg(1, "b", "GET /b", t1), t2)
	tab.End(endMsg(1, "a", "GET /a", t0), t2) // does not make a the last ended
	for _, m := range []*protocol.Message{startMsg(1, "a", "GET /a", t0), startMsg(1, "b", "GET /b", t1)} {
		if old, err := tab.Start(m, m.Endpoint, t2); old != nil || err != nil {
			t.Errorf("start of %s after its end: got %+v, %v", m.ID, old, err)
		}
	}
	if n := tab.Len(); n != 0 {
		t.Errorf("got %d in flight after starts that came after their ends; want 0", n)
	}
	// The worker's next request opens as usual.
	tab.Start(startMsg(1, "c", "GET /c", t2), "GET /c", t2)
	if n := tab.Len(); n != 1 {
		t.Errorf("got %d in flight; want c", n)
	}
}
