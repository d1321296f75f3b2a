package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bitville/bitville-apm/internal/stack"
)

// BenchmarkAgentSocket measures the real binary end to end on one core: it
// runs `bitville-apm agent` under GOMAXPROCS=1 (pinned to CPU 0 with taskset
// when available), sends realistic end messages (20 SQL statements, 50
// functions, ~8 KiB) over the unix socket as fast as the socket takes them,
// and waits until the agent has counted every one. Unix datagram sockets
// block a sender whose receiver is behind, so the rate is what the agent
// processes, not what it drops. Reports messages/s and the agent's RSS.
func BenchmarkAgentSocket(b *testing.B) {
	bin := buildBinary(b)
	msgs := make([][]byte, 256)
	for i := range msgs {
		msgs[i] = benchEnd(b, i)
	}
	b.Run("realistic", func(b *testing.B) {
		socketRun(b, bin, func(i int) []byte { return msgs[i%len(msgs)] })
	})
	// Every message new: unique endpoints, functions and SQL shapes, so the
	// limits overflow, the fingerprint cache always misses, and memory must
	// stay bounded all the same.
	b.Run("unique", func(b *testing.B) {
		socketRun(b, bin, func(i int) []byte { return uniqueEnd(i) })
	})
	// Raw traces: every message is a slow request (a threshold of 1 ms), so
	// each is selected, built and offered to the pipeline. sink-off ships
	// nowhere; loki-down ships to a Loki that refuses connections, with the
	// default rate limit and a spool on disk: what a dead receiver costs
	// the agent (its target: within 10 % of sink-off).
	slow := []string{"--events.slow-threshold=1ms"}
	b.Run("traces-sink-off", func(b *testing.B) {
		socketRun(b, bin, func(i int) []byte { return msgs[i%len(msgs)] }, slow...)
	})
	b.Run("traces-loki-down", func(b *testing.B) {
		port, err := stack.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		args := append(slices.Clone(slow), fmt.Sprintf("--loki.url=http://127.0.0.1:%d/loki/api/v1/push", port), "--events.spool-dir="+b.TempDir())
		socketRun(b, bin, func(i int) []byte { return msgs[i%len(msgs)] }, args...)
	})
	// No rate limit: every message's event is built and spooled, the most
	// a dead receiver can cost.
	b.Run("traces-loki-down-unlimited", func(b *testing.B) {
		socketRun(b, bin, func(i int) []byte { return msgs[i%len(msgs)] },
			append(slices.Clone(slow), "--loki.url=http://127.0.0.1:1/loki/api/v1/push", "--events.spool-dir="+b.TempDir(),
				"--events.rate-limit=1e9", "--events.rate-burst=1000000000")...)
	})
}

func uniqueEnd(i int) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"v":1,"type":"end","id":"u%d","pid":%d,"project":"shop","ts":1764294512,"method":"GET","endpoint":"GET /u%d","started":1764294512,"status":200,"wall":0.05,"cpu_user":0.01,"mem_peak":4194304,"sql":[`, i, 1+i%1000, i)
	for j := 0; j < 20; j++ {
		if j > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"q":"SELECT c%d_%d FROM t%d WHERE id = %d","d":0.001}`, i, j, j, i)
	}
	sb.WriteString(`],"fn":[`)
	for j := 0; j < 50; j++ {
		if j > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"n":"App\\U%d\\F%d::run","self":0.001,"incl":0.002}`, i, j)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

func socketRun(b *testing.B, bin string, msg func(i int) []byte, args ...string) {
	p := startAgentFor(b, bin, args...)
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: p.socket, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	b.SetBytes(int64(len(msg(0))))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(msg(i)); err != nil {
			b.Fatal(err)
		}
	}
	for value(p.scrape(b), `bitville_agent_messages_total{reason="none",result="accepted",type="end"}`) < float64(b.N) {
		time.Sleep(20 * time.Millisecond) // scraping costs the agent CPU: poll gently
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	rss, hwm := procMemory(p.cmd.Process.Pid)
	b.ReportMetric(float64(rss)/(1<<20), "RSS-MiB")
	b.ReportMetric(float64(hwm)/(1<<20), "peakRSS-MiB")
	out := p.scrape(b)
	if inv := value(out, `bitville_agent_messages_total{reason=`) - value(out, `bitville_agent_messages_total{reason="none"`); inv != 0 {
		b.Fatalf("agent rejected %v benchmark messages", inv)
	}
}

// startAgentFor runs the agent on one core: GOMAXPROCS=1, and pinned to
// CPU 0 when taskset is there.
func startAgentFor(b *testing.B, bin string, extra ...string) *agentProcess {
	socket := b.TempDir() + "/agent.sock"
	args := append([]string{bin, "--log.format=json", "agent", "--agent.socket=" + socket, "--web.listen-address=127.0.0.1:0", "--no-agent.check-pids", "--agent.readers=1"}, extra...)
	if ts, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{ts, "-c", "0"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	return runAgent(b, cmd, socket)
}

func benchEnd(b *testing.B, i int) []byte {
	var m map[string]any
	if err := json.Unmarshal(readGolden(b, "end.json"), &m); err != nil {
		b.Fatal(err)
	}
	m["id"] = fmt.Sprintf("bench%08d", i)
	m["pid"] = 1000 + i%64
	m["endpoint"] = fmt.Sprintf("GET /orders/{id}/v%d", i%20)
	for j, s := range m["sql"].([]any) {
		q := s.(map[string]any)
		q["q"] = q["q"].(string) + fmt.Sprintf(" /*endpoint='GET%%20%%2Forders%%2F%%7Bid%%7D',action='show%d'*/", j%4)
	}
	out, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// procMemory returns VmRSS and VmHWM of pid in bytes.
func procMemory(pid int) (rss, hwm int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = n << 10
		case "VmHWM:":
			hwm = n << 10
		}
	}
	return rss, hwm
}
