package host

import (
	"errors"
)

// nameKey is what a process is counted under: its name and group.
type nameKey struct{ name, group string }

// otherKey stands for every name without series of its own.
var otherKey = nameKey{GroupOther, GroupOther}

// procState is what one scan remembers of a process for the next: its
// identity (pid and start time), its parent and its CPU counters at last
// sight.
type procState struct {
	start    uint64 // start time, ticks after boot: with the pid, the identity
	ppid     int
	cpu      uint64 // utime+stime at last sight
	children uint64 // cutime+cstime at last sight
	comm     string // raw comm, to reuse key while it does not change
	key      nameKey
	gen      uint32 // the scan that saw it last
}

// nameStats is what one scan found for a name: CPU ticks used since the
// previous scan, and tasks running and in uninterruptible sleep now.
type nameStats struct {
	cpu                      uint64
	running, uninterruptible int
}

func (n nameStats) active() bool { return n.cpu > 0 || n.running > 0 || n.uninterruptible > 0 }

// scanResult is one scan's outcome. Its maps and slices belong to the
// scanner and are valid until the next scan.
type scanResult struct {
	names      map[nameKey]nameStats
	processes  int   // processes read
	statErrors int   // stat files (of processes or threads) unreadable or unparseable
	listErr    error // the process directory could not be listed: nothing else was read
	pressure   []pressure
	pressErr   error
}

// grown is a process whose waited-for children's CPU grew since the last
// scan.
type grown struct {
	pid    int
	growth uint64
	key    nameKey
}

// scanner reads /proc and turns two successive readings into exact CPU
// deltas per name. It is used by one goroutine at a time.
//
// CPU is counted per process, keyed by (pid, start time), as the growth of
// utime+stime between scans. The first scan only records: CPU used before
// it is not counted. A process first seen later is counted from its start
// if it started after the first scan (its whole life lies in the watched
// period), else from first sight: the behaviour of ncabatoff's
// process-exporter. A process that exits between two scans is not seen at
// its end; its last interval, and the whole life of a child that came and
// went between two scans, reach the parent's cutime+cstime when the parent
// waits for it. So the parent's growth of those, less what was already
// counted of the children seen at the previous scan (their CPU and their
// own children's at last sight), is counted under the parent's name.
// Children whose parent is gone, or that are never waited for, are lost.
type scanner struct {
	procPath string
	r        reader

	procs    map[int]procState
	gen      uint32 // successful scans (those that listed the processes)
	baseline uint64 // newest start time at the first scan

	// Reused from scan to scan.
	names            map[nameKey]nameStats
	ids, tids        []int
	dirs, tdirs      []string
	grown            []grown
	reaped           map[int]uint64 // pid → CPU of its children seen before they died
	userKeys, kernel map[string]interned
	pressure         []pressure
}

func newScanner(procPath string) *scanner {
	return &scanner{
		procPath: procPath,
		procs:    make(map[int]procState),
		names:    make(map[nameKey]nameStats),
		reaped:   make(map[int]uint64),
		userKeys: make(map[string]interned),
		kernel:   make(map[string]interned),
	}
}

// interned is a comm seen before, as a string, and its name and group.
type interned struct {
	comm string
	key  nameKey
}

// maxInterned bounds the comm cache; past it the cache starts over.
const maxInterned = 4096

// key returns a comm as a string and its name and group, without
// allocating for a comm seen before.
func (s *scanner) key(comm []byte, isKernel bool) interned {
	cache := s.userKeys
	if isKernel {
		cache = s.kernel
	}
	if in, ok := cache[string(comm)]; ok {
		return in
	}
	if len(cache) >= maxInterned {
		clear(cache)
	}
	name := processName(comm, isKernel)
	in := interned{comm: string(comm), key: nameKey{name, processGroup(name, isKernel)}}
	cache[in.comm] = in
	return in
}

// scan reads every process once and returns what it found.
func (s *scanner) scan() scanResult {
	clear(s.names)
	clear(s.reaped)
	s.grown = s.grown[:0]
	res := scanResult{names: s.names}
	s.pressure, res.pressErr = readPressure(&s.r, s.procPath, s.pressure[:0])
	res.pressure = s.pressure

	var err error
	s.ids, s.dirs, err = readNames(s.procPath, s.ids[:0], s.dirs[:0])
	if err != nil {
		res.listErr = err
		return res
	}
	s.gen++
	first := s.gen == 1
	for i, pid := range s.ids {
		b, err := s.r.read(s.procPath + "/" + s.dirs[i] + "/stat")
		if err != nil {
			if !errors.Is(err, errGone) {
				res.statErrors++
			}
			continue
		}
		st, err := parseStat(b)
		if err != nil || st.PID != pid {
			res.statErrors++
			continue
		}
		old, known := s.procs[pid]
		if known && old.start != st.StartTime {
			// The pid was reused: the process known under it died.
			s.died(old)
			known = false
		}
		in := interned{comm: old.comm, key: old.key}
		if !known || old.comm != string(st.Comm) {
			in = s.key(st.Comm, st.Kernel())
		}
		key := in.key
		var cpu uint64
		switch {
		case known:
			cpu = sub(st.CPU(), old.cpu)
			if g := sub(st.Children(), old.children); g > 0 {
				s.grown = append(s.grown, grown{pid: pid, growth: g, key: key})
			}
		case first:
			s.baseline = max(s.baseline, st.StartTime)
		case st.StartTime > s.baseline:
			cpu = st.CPU() + st.Children()
		}
		ns := s.names[key]
		ns.cpu += cpu
		running, uninterruptible := s.tasks(s.dirs[i], &st, &res)
		ns.running += running
		ns.uninterruptible += uninterruptible
		s.names[key] = ns
		s.procs[pid] = procState{start: st.StartTime, ppid: st.PPID, cpu: st.CPU(), children: st.Children(),
			comm: in.comm, key: key, gen: s.gen}
		res.processes++
	}
	for pid, p := range s.procs {
		if p.gen != s.gen {
			s.died(p)
			delete(s.procs, pid)
		}
	}
	for _, g := range s.grown {
		if cpu := sub(g.growth, s.reaped[g.pid]); cpu > 0 {
			ns := s.names[g.key]
			ns.cpu += cpu
			s.names[g.key] = ns
		}
	}
	return res
}

// died notes that p is gone: when its parent waits for it, the parent's
// children CPU grows by p's total, of which what p had at last sight was
// already counted (or was before the first scan).
func (s *scanner) died(p procState) {
	s.reaped[p.ppid] += p.cpu + p.children
}

// tasks counts the tasks of a process running and in uninterruptible
// sleep: its own state when it has one thread, each thread's otherwise.
func (s *scanner) tasks(dir string, st *procStat, res *scanResult) (running, uninterruptible int) {
	count := func(state byte) {
		switch state {
		case 'R':
			running++
		case 'D':
			uninterruptible++
		}
	}
	if st.NumThreads <= 1 {
		count(st.State)
		return
	}
	taskDir := s.procPath + "/" + dir + "/task"
	var err error
	s.tids, s.tdirs, err = readNames(taskDir, s.tids[:0], s.tdirs[:0])
	if err != nil {
		// Gone meanwhile, or hidden: the main thread stands for all.
		count(st.State)
		return
	}
	for i, tid := range s.tids {
		b, err := s.r.read(taskDir + "/" + s.tdirs[i] + "/stat")
		if err != nil {
			if !errors.Is(err, errGone) {
				res.statErrors++
			}
			continue
		}
		t, err := parseStat(b)
		if err != nil || t.PID != tid {
			res.statErrors++
			continue
		}
		count(t.State)
	}
	return
}

// sub is a-b, or 0 when b is larger (a counter that went back: never
// counted as negative CPU).
func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
