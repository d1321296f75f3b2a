package top

import (
	"fmt"

	"github.com/bitville/bitville-apm/internal/logql"
)

// noise is the growth below which nothing counts as the verdict's
// offender: a twentieth of a worker, core or session.
const noise = 0.05

// verdict names the most likely cause, taking the first that holds:
// a process outside PHP and PostgreSQL, lock contention, stuck requests,
// slow SQL, workers waiting in a function, CPU in PHP, busy workers,
// memory. logs is the LogQL search of the culprit's raw traces
// (internal/logql): an endpoint's slowest requests (its abandoned ones
// when stuck, its failed ones for memory), the requests that ran a query,
// the lock trees; "" for a process outside PHP or no offender.
func verdict(r *Report) (text, logs string) {
	var e *Endpoint
	var q *Query
	var w *Wait
	var m *Memory
	if len(r.Endpoints) > 0 && r.Endpoints[0].Score > noise {
		e = &r.Endpoints[0]
	}
	if len(r.Queries) > 0 && r.Queries[0].Score > noise {
		q = &r.Queries[0]
	}
	if len(r.Waits) > 0 && r.Waits[0].Score > noise {
		w = &r.Waits[0]
	}
	if len(r.Memory) > 0 && r.Memory[0].Score > noise {
		m = &r.Memory[0]
	}
	cpu, busy := 0.0, 0.0
	if e != nil {
		cpu = e.Window.CPU - e.Baseline.CPU
		busy = e.Window.busy() - e.Baseline.busy()
	}
	// The functions that grew most in CPU and in wall time.
	var fCPU, fWall *Function
	for i := range r.Functions {
		f := &r.Functions[i]
		if f.cpuGrowth() > noise && (fCPU == nil || f.cpuGrowth() > fCPU.cpuGrowth()) {
			fCPU = f
		}
		if f.wallGrowth() > noise && (fWall == nil || f.wallGrowth() > fWall.wallGrowth()) {
			fWall = f
		}
	}
	// The function the workers wait in, when the top endpoint's growth is
	// mostly waiting.
	var fWait *Function
	if e != nil && waiting(busy, cpu) && fWall != nil && waitingIn(*fWall, fCPU) {
		fWait = fWall
	}
	p := notPHP(r)
	switch {
	case p != nil:
		return notPHPText(p), ""
	case w != nil && w.WaitEventType == "Lock" && w.Score >= cpu:
		s := fmt.Sprintf("Lock contention: %.1f more database sessions wait on %s", w.Score, w.Name)
		if q != nil {
			s += "; the statement they run: " + queryText(q)
		}
		return s + ".", logql.LockTrees(logql.Is(""), logql.Is(""))
	// Stuck: requests are killed at least half as often as they finish. A
	// few abandoned among many finished are lost end messages (a full
	// socket queue) or the odd crash, not the cause of a spike.
	case e != nil && e.Window.Abandoned > e.Baseline.Abandoned && e.Window.Abandoned >= 0.5*60*e.Window.Requests &&
		e.Window.InFlight-e.Baseline.InFlight >= cpu:
		return fmt.Sprintf("Stuck requests: %s holds %.1f more workers in flight, and %.1f of its requests a minute are killed before they finish.",
			e.Name, e.Window.InFlight-e.Baseline.InFlight, e.Window.Abandoned), logql.Abandoned(logql.Is(e.Project), logql.Is(e.Name))
	// A query explains the waiting unless the workers wait more than
	// twice as long elsewhere (PHP's own wait on a slow query shows as
	// wall time in the call that runs it, about as much as the query's
	// growth).
	case q != nil && q.Score >= cpu && (fWait == nil || fWait.wallGrowth() <= 2*q.Score):
		return fmt.Sprintf("Slow SQL: %s grew by %.2f s/s in PHP and %.2f active sessions in the database.",
			queryText(q), q.Window.PHP-q.Baseline.PHP, q.Window.Sessions-q.Baseline.Sessions), logql.RequestsOfQuery(logql.Is(""), logql.Is(q.QueryFP))
	case fWait != nil:
		s := "Workers wait in " + call(fWait.Name)
		if fWait.Caller != "" {
			s += " called from " + fWait.Caller
		}
		return s + fmt.Sprintf(": %s keeps %.1f more workers busy.", e.Name, busy), slowest(e)
	case e != nil && cpu > noise:
		s := fmt.Sprintf("CPU in PHP: %s uses %.2f more cores", e.Name, cpu)
		if fCPU != nil {
			s += ", most of it in " + fCPU.Name
		}
		return s + ".", slowest(e)
	case e != nil:
		return fmt.Sprintf("Busy workers: %s keeps %.1f more workers busy.", e.Name, busy), slowest(e)
	case m != nil:
		return memoryText(m), logql.FailedRequests(logql.Is(m.Project), logql.Is(m.Name))
	default:
		return "No clear offender: nothing grew by more than the noise between the baseline and the window.", ""
	}
}

// slowest is the search of an endpoint's slowest requests.
func slowest(e *Endpoint) string {
	return logql.SlowestRequests(logql.Is(e.Project), logql.Is(e.Name))
}

// waiting says whether growth of busy workers is mostly waiting: more of
// it off the CPU than on it.
func waiting(busy, cpu float64) bool { return busy-cpu > cpu }

// waitingIn says whether workers wait in f rather than compute in it:
// most of its wall time is off the CPU, and it is not where the CPU went
// (no CPU growth beyond the noise, or less than half that of fCPU, the
// function that grew most in CPU). Wall time alone cannot tell: when the
// cores are saturated a CPU-bound function's wall time is a multiple of
// its CPU time, spent in the run queue, at load 200 on 16 cores twelve
// times. A blocking call (session_start, fgets, ->get) has no CPU time of
// its own: the CPU profiler never names internal functions.
func waitingIn(f Function, fCPU *Function) bool {
	if !waiting(f.wallGrowth(), f.cpuGrowth()) {
		return false
	}
	return f.cpuGrowth() <= noise || (fCPU != nil && f.cpuGrowth() < fCPU.cpuGrowth()/2)
}

// notPHP returns the process outside PHP and PostgreSQL that explains
// the window, if one does: the first of group other or kernel, which grew
// more than the PHP endpoints together (busy workers + CPU) and more than
// PostgreSQL's processes.
func notPHP(r *Report) *Process {
	for i := range r.Processes {
		p := &r.Processes[i]
		if p.Group != groupOther && p.Group != groupKernel {
			continue
		}
		if p.Score > noise && p.Score > r.phpGrowth && p.Score > r.groupGrowth[groupPostgres] {
			return p
		}
		return nil
	}
	return nil
}

func notPHPText(p *Process) string {
	cpu := p.Window.CPU - p.Baseline.CPU
	d := p.Window.Uninterruptible - p.Baseline.Uninterruptible
	switch {
	case cpu > noise && d > noise:
		return fmt.Sprintf("Not PHP: %s uses %.1f cores, and %.1f more of its tasks are in uninterruptible sleep (D).", p.Name, p.Window.CPU, d)
	case cpu >= d:
		return fmt.Sprintf("Not PHP: %s uses %.1f cores.", p.Name, p.Window.CPU)
	default:
		return fmt.Sprintf("Not PHP: %s has %.1f more tasks in uninterruptible sleep (D).", p.Name, d)
	}
}

func memoryText(m *Memory) string {
	grew := fmt.Sprintf("its peak memory per request grew from %.1f MiB to %.1f MiB", m.Baseline.PeakBytes/mib, m.Window.PeakBytes/mib)
	switch {
	case m.limitGrowth() > 0 && m.peakGrowth()/mib/mibPerPoint > noise:
		return fmt.Sprintf("Memory: %.1f requests a minute of %s die of memory_limit, and %s.", m.Window.MemoryLimit, m.Name, grew)
	case m.limitGrowth() > 0:
		return fmt.Sprintf("Memory: %.1f requests a minute of %s die of memory_limit.", m.Window.MemoryLimit, m.Name)
	default:
		return fmt.Sprintf("Memory: %s: %s.", m.Name, grew)
	}
}

func queryText(q *Query) string {
	t := q.Name
	if t == "" {
		t = "query " + q.QueryFP
	}
	if len(t) > 80 {
		t = t[:77] + "..."
	}
	if q.TopEndpoint != "" {
		t += " (from " + q.TopEndpoint + ")"
	}
	return t
}
