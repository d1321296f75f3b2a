package main

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// BENCH_PERF_EVENTS names perf's software events and tracepoints
// (page-faults, context-switches, raw_syscalls:sys_enter, ...) to count in
// a benchmark's worker beside its CPU: where the time that callgrind's
// user-space instructions do not show goes. Hardware counters are not
// offered inside most VMs.
func perfEventList(b *testing.B) []string {
	b.Helper()
	v := strings.TrimSpace(os.Getenv("BENCH_PERF_EVENTS"))
	if v == "" {
		return nil
	}
	if _, err := exec.LookPath("perf"); err != nil {
		b.Fatalf("BENCH_PERF_EVENTS needs perf (Debian package linux-perf): %v", err)
	}
	return strings.Split(v, ",")
}

// perfStat is one `perf stat` attached to a process until stop.
type perfStat struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	events []string
}

// startPerfStat counts events in pid's threads until stop; with no events
// it does nothing.
func startPerfStat(b *testing.B, events []string, pid int) *perfStat {
	b.Helper()
	s := &perfStat{events: events}
	if len(events) == 0 {
		return s
	}
	s.cmd = exec.Command("perf", "stat", "-x,", "-e", strings.Join(events, ","), "-p", strconv.Itoa(pid))
	s.cmd.Stderr = &s.out
	if err := s.cmd.Start(); err != nil {
		b.Fatalf("perf stat: %v", err)
	}
	return s
}

// stop ends perf and returns its counts in the order of the events.
func (s *perfStat) stop(b *testing.B) []float64 {
	b.Helper()
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	_ = s.cmd.Wait()
	counts := make([]float64, len(s.events))
	found := 0
	for _, line := range strings.Split(s.out.String(), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		for i, e := range s.events {
			if f[2] == e {
				n, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					b.Fatalf("perf stat: %s counted %q: %s", e, f[0], s.out.String())
				}
				counts[i] = n
				found++
			}
		}
	}
	if found != len(s.events) {
		b.Fatalf("perf stat counted %d of %d events:\n%s", found, len(s.events), s.out.String())
	}
	return counts
}

// addCounts adds b to a, element by element.
func addCounts(a, b []float64) []float64 {
	if a == nil {
		a = make([]float64, len(b))
	}
	for i := range b {
		a[i] += b[i]
	}
	return a
}
