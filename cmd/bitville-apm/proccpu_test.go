package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// for every architecture the project builds for).
const clockTicks = 100

// procStat reads a process's parent id and its CPU time: user+system of
// the process itself, and of its children it has waited for.
func procStat(pid int) (ppid int, self, reaped time.Duration, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	ticks := func(s string) time.Duration {
		n, _ := strconv.ParseInt(s, 10, 64)
		return time.Duration(n) * time.Second / clockTicks
	}
	ppid, _ = strconv.Atoi(f[1])
	// f[0] is field 3 (state): utime, stime, cutime, cstime are fields 14–17.
	return ppid, ticks(f[11]) + ticks(f[12]), ticks(f[13]) + ticks(f[14]), true
}

// treeCPU is the CPU time a process tree has used so far: every live
// process under root, plus the children they have reaped (a postmaster's
// finished backends, a php-fpm master's replaced workers).
func treeCPU(root int) time.Duration {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, ok := procStat(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var sum time.Duration
	var walk func(int)
	walk = func(pid int) {
		if _, self, reaped, ok := procStat(pid); ok {
			sum += self + reaped
		}
		for _, c := range children[pid] {
			walk(c)
		}
	}
	walk(root)
	return sum
}
