package host

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkScan measures one reading of the real /proc with 1,000 more
// processes on the host than it had (sleep 600, started before and killed
// after). cpu-ns/op is the CPU the test process used per scan (user and
// system, getrusage), the figure that costs the host.
func BenchmarkScan(b *testing.B) {
	const extra = 1000
	procs := make([]*exec.Cmd, 0, extra)
	b.Cleanup(func() {
		for _, p := range procs {
			_ = p.Process.Kill()
		}
		for _, p := range procs {
			_ = p.Wait()
		}
	})
	for range extra {
		p := exec.Command("sleep", "600")
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
	}
	c := New(Options{Config: DefaultConfig(), SeriesTTL: time.Hour}, prometheus.NewRegistry())
	c.Scan() // the first scan fills the maps
	b.ReportAllocs()
	b.ResetTimer()
	before := cpuTime(b)
	for b.Loop() {
		c.Scan()
	}
	used := cpuTime(b) - before
	b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
	c.mu.Lock()
	b.ReportMetric(float64(c.processes), "processes")
	c.mu.Unlock()
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
