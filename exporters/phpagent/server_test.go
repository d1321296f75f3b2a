package phpagent

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenSocket(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Socket = filepath.Join(dir, "sub", "agent.sock") // the directory is created
	cfg.SocketMode = 0o620
	cfg.SocketGroup = "0"
	cfg.MinQueueLen = 0 // leave the host's net.unix.max_dgram_qlen alone

	s, err := ListenSocket(cfg)
	if err != nil {
		t.Fatalf("ListenSocket: %v", err)
	}
	fi, err := os.Stat(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o620 {
		t.Errorf("got mode %v; want a socket with 0620", fi.Mode())
	}
	if n, err := ReceiveBuffer(s.UnixConn); err != nil || n < 64<<10 {
		t.Errorf("got receive buffer %d, %v; want at least 64 KiB", n, err)
	}

	t.Run("live socket is not taken over", func(t *testing.T) {
		_, err := ListenSocket(cfg)
		if err == nil || !strings.Contains(err.Error(), "another process is bound") {
			t.Errorf("got %v; want an error saying another process is bound", err)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Socket); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}

	t.Run("regular file is not removed", func(t *testing.T) {
		c := cfg
		c.Socket = filepath.Join(dir, "file")
		os.WriteFile(c.Socket, []byte("keep me"), 0o644)
		if _, err := ListenSocket(c); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("got %v; want an error saying it is not a socket", err)
		}
		if b, _ := os.ReadFile(c.Socket); string(b) != "keep me" {
			t.Errorf("the file was changed")
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		c := cfg
		c.Socket = filepath.Join(dir, "g.sock")
		c.SocketGroup = "no-such-group-bitville"
		if _, err := ListenSocket(c); err == nil || !strings.Contains(err.Error(), "no-such-group-bitville") {
			t.Errorf("got %v; want an error naming the group", err)
		}
		if _, err := os.Stat(c.Socket); !os.IsNotExist(err) {
			t.Errorf("socket file left after a failed listen")
		}
	})
}

// TestServeOversized sends a datagram larger than the limit through a real
// socket: it must be rejected as too_large, not decoded from a cut buffer.
func TestServeOversized(t *testing.T) {
	a, reg := newTestAgent(t, nil)
	cfg := DefaultConfig()
	cfg.Socket = filepath.Join(t.TempDir(), "a.sock")
	cfg.MinQueueLen = 0 // leave the host's net.unix.max_dgram_qlen alone
	s, err := ListenSocket(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Serve(ctx, s, 2) }()

	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: cfg.Socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetWriteBuffer(1 << 20)
	big := []byte(`{"v":1,"type":"start","id":"a","pid":1,"project":"p","ts":1764294512,"method":"GET","started":1764294512,"pad":"` + strings.Repeat("x", 70000) + `"}`)
	if _, err := c.Write(big); err != nil {
		t.Fatalf("cannot send %d bytes: %v", len(big), err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for series(t, reg, "bitville_agent_messages_total")[`bitville_agent_messages_total{reason=too_large,result=invalid,type=unknown}`] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("oversized datagram not counted as too_large: %v", series(t, reg, "bitville_agent_messages_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !a.Ready() {
		t.Errorf("got not ready while serving")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if a.Ready() {
		t.Errorf("got ready after stop")
	}
}

func TestEnsureDgramQlen(t *testing.T) {
	dir := t.TempDir()
	old := dgramQlenPath
	t.Cleanup(func() { dgramQlenPath = old })
	dgramQlenPath = filepath.Join(dir, "max_dgram_qlen")
	set := func(v string) {
		t.Helper()
		if err := os.WriteFile(dgramQlenPath, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name       string
		have       string
		min        int
		wantQlen   int
		wantRaised bool
		wantFile   string
	}{
		{"kernel default raised", "10\n", 1024, 1024, true, "1024"},
		{"already enough", "4096\n", 1024, 4096, false, "4096\n"},
		{"zero leaves it", "10\n", 0, 10, false, "10\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set(c.have)
			q, raised, err := ensureDgramQlen(c.min)
			if err != nil || q != c.wantQlen || raised != c.wantRaised {
				t.Errorf("got %d, %v, %v; want %d, %v, nil", q, raised, err, c.wantQlen, c.wantRaised)
			}
			if b, _ := os.ReadFile(dgramQlenPath); string(b) != c.wantFile {
				t.Errorf("got file %q; want %q", b, c.wantFile)
			}
		})
	}
	t.Run("cannot raise", func(t *testing.T) {
		dgramQlenPath = filepath.Join(dir, "missing", "max_dgram_qlen")
		if _, _, err := ensureDgramQlen(1024); err == nil {
			t.Errorf("got no error for an unreadable limit")
		}
		dgramQlenPath = filepath.Join(dir, "ro")
		if err := os.Mkdir(dgramQlenPath, 0o755); err != nil {
			t.Fatal(err)
		}
		// A directory cannot be read as a number, let alone written.
		if _, _, err := ensureDgramQlen(1024); err == nil {
			t.Errorf("got no error for a limit that cannot be read")
		}
	})
}

// TestServeHandlesEveryDatagram sends bursts far larger than one drain
// (and than the kernel's queue) through a real socket, with the paced
// readers and with a reader per datagram: every datagram must be handled.
func TestServeHandlesEveryDatagram(t *testing.T) {
	for _, pause := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("pause=%s", pause), func(t *testing.T) {
			a, reg := newTestAgent(t, func(c *Config) { c.ReadPause = pause })
			cfg := DefaultConfig()
			cfg.Socket = filepath.Join(t.TempDir(), "a.sock")
			cfg.MinQueueLen = 0
			s, err := ListenSocket(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- a.Serve(ctx, s, 3) }()

			// A blocking client: when the queue is full it waits, so
			// nothing is dropped on the sending side.
			c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: cfg.Socket, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const n = 3000
			for i := 0; i < n; i++ {
				msg := fmt.Sprintf(`{"v":1,"type":"start","id":"%032x","pid":%d,"project":"p","ts":1764294512,"method":"GET","uri":"/x","endpoint":"GET /x","started":1764294512}`, i, 1000+i%50)
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
				if i%1000 == 999 {
					time.Sleep(50 * time.Millisecond) // a second drain after a pause
				}
			}
			key := `bitville_agent_messages_total{reason=none,result=accepted,type=start}`
			deadline := time.Now().Add(10 * time.Second)
			for series(t, reg, "bitville_agent_messages_total")[key] != n {
				if time.Now().After(deadline) {
					t.Fatalf("handled %v of %d datagrams: %v", series(t, reg, "bitville_agent_messages_total")[key], n, series(t, reg, "bitville_agent_messages_total"))
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not stop")
			}
		})
	}
}

func TestDrainPacerWait(t *testing.T) {
	t0 := time.Unix(1764294512, 0)
	const kb = 1024
	// fresh is a pacer whose last drain started at t0 and that has seen no
	// traffic before.
	fresh := func(queueLen, sendBuf int) *drainPacer {
		return &drainPacer{pause: 20 * time.Millisecond, queueLen: queueLen, sendBuf: sendBuf, last: t0}
	}
	near := func(got, want time.Duration) bool { return got > want-time.Microsecond && got < want+time.Microsecond }
	first := &drainPacer{pause: 20 * time.Millisecond, queueLen: 1024, sendBuf: 212992}
	if got := first.wait(5, 5*kb, t0); got != 20*time.Millisecond {
		t.Errorf("first drain: got %s; want the configured pause", got)
	}
	// 100 small datagrams in 20 ms fill half of 1024 in 102.4 ms, half a
	// send buffer (200 KB) in 208 ms: the pause stays.
	if got := fresh(1024, 212992).wait(100, 100*kb, t0.Add(20*time.Millisecond)); got != 20*time.Millisecond {
		t.Errorf("light load: got %s; want 20ms", got)
	}
	// 450 in 10 ms fill half of 1024 in 11.4 ms: the pause is cut to that.
	if got, want := fresh(1024, 212992).wait(450, 20*kb, t0.Add(10*time.Millisecond)), 10*time.Millisecond*1024/900; !near(got, want) {
		t.Errorf("many datagrams: got %s; want %s", got, want)
	}
	// 20 datagrams charging 4 KiB each in 10 ms fill half a send buffer
	// in 13 ms.
	if got, want := fresh(1024, 212992).wait(20, 80*kb, t0.Add(10*time.Millisecond)), 10*time.Millisecond*212992/(2*80*kb); !near(got, want) {
		t.Errorf("large datagrams: got %s; want %s", got, want)
	}
	// Half the queue, or half a send buffer, came in: no pause at all.
	if got := fresh(1024, 212992).wait(512, 512*kb/4, t0.Add(20*time.Millisecond)); got != 0 {
		t.Errorf("half the queue: got %s; want no pause", got)
	}
	if got := fresh(1024, 212992).wait(13, 13*8*kb, t0.Add(20*time.Millisecond)); got != 0 {
		t.Errorf("half a send buffer: got %s; want no pause", got)
	}
	// With the kernel's 10, 5 datagrams already are half the queue.
	if got := fresh(10, 212992).wait(5, 5*kb, t0.Add(20*time.Millisecond)); got != 0 {
		t.Errorf("small queue, half full: got %s; want no pause", got)
	}
	// 2 in 20 ms: 5 in 50 ms, above the pause.
	if got := fresh(10, 212992).wait(2, 2*kb, t0.Add(20*time.Millisecond)); got != 20*time.Millisecond {
		t.Errorf("small queue, light load: got %s; want 20ms", got)
	}
	// 4 in 0.5 ms fill 5 in 0.6 ms: below a millisecond, no pause.
	if got := fresh(10, 212992).wait(4, 4*kb, t0.Add(500*time.Microsecond)); got != 0 {
		t.Errorf("a pause under 1ms: got %s; want none", got)
	}
	if got := fresh(0, 0).wait(5, 5*kb, t0.Add(20*time.Millisecond)); got != 0 { // unknown: the kernel's defaults
		t.Errorf("unknown queue: got %s; want no pause", got)
	}

	// A lull does not undo a burst: the pause stays as short as the
	// burst's rate asks, that rate fading by half every second.
	p := fresh(1024, 212992)
	burst := p.wait(20, 80*kb, t0.Add(10*time.Millisecond)) // 13 ms, as above
	p.last = t0.Add(10 * time.Millisecond)
	// One small datagram 0.5 ms later would alone allow the full pause.
	lull := p.wait(1, kb, t0.Add(10*time.Millisecond+500*time.Microsecond))
	if want := time.Duration(float64(burst) / math.Exp2(-0.0005)); !near(lull, want) {
		t.Errorf("a lull after a burst: got %s; want %s (the burst's %s, faded by 0.5ms)", lull, want, burst)
	}
	// Ten seconds later the burst is forgotten.
	p.last = t0.Add(10*time.Millisecond + 500*time.Microsecond)
	if got := p.wait(1, kb, p.last.Add(10*time.Second)); got != 20*time.Millisecond {
		t.Errorf("ten seconds after a burst: got %s; want the configured pause", got)
	}
}

func TestChargedSize(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{0, 768},
		{100, 768},
		{600, 1280}, // measured: 167 of them fill a 212,992-byte send buffer
		{7377, 8448},
		{8200, 16640},
	} {
		if got := chargedSize(c.n); got != c.want {
			t.Errorf("chargedSize(%d) = %d; want %d", c.n, got, c.want)
		}
	}
}
