package phpagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
)

// Socket is the bound agent socket. Close removes its file, unless another
// daemon has replaced it meanwhile.
type Socket struct {
	*net.UnixConn
	path string
	ino  uint64
	// QueueLen is the most datagrams the kernel queues on the socket,
	// whatever its receive buffer: net.unix.max_dgram_qlen when the socket
	// was made (0 when unknown). QueueRaised says the daemon raised it.
	QueueLen    int
	QueueRaised bool
	QueueErr    error // why it could not be raised to Config.MinQueueLen
}

// dgramQlenPath holds the kernel's queue limit for unix datagram sockets,
// copied into each socket when it is created. The default of 10 means a
// daemon that falls ten datagrams behind makes the PHP workers drop.
var dgramQlenPath = "/proc/sys/net/unix/max_dgram_qlen"

// ensureDgramQlen raises net.unix.max_dgram_qlen to min when it is lower
// and the daemon may (root in the init network namespace), and returns the
// value in force.
func ensureDgramQlen(min int) (qlen int, raised bool, err error) {
	b, err := os.ReadFile(dgramQlenPath)
	if err != nil {
		return 0, false, fmt.Errorf("cannot read %s: %w", dgramQlenPath, err)
	}
	qlen, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false, fmt.Errorf("cannot parse %s: %w", dgramQlenPath, err)
	}
	if min <= 0 || qlen >= min {
		return qlen, false, nil
	}
	if err := os.WriteFile(dgramQlenPath, []byte(strconv.Itoa(min)), 0o644); err != nil {
		return qlen, false, fmt.Errorf("cannot raise net.unix.max_dgram_qlen from %d to %d (run `sysctl -w net.unix.max_dgram_qlen=%d` as root, or see deploy/sysctl): %w", qlen, min, min, err)
	}
	return min, true, nil
}

// Close closes the socket and removes its file.
func (s *Socket) Close() error {
	err := s.UnixConn.Close()
	var st syscall.Stat_t
	if syscall.Stat(s.path, &st) == nil && st.Ino == s.ino {
		_ = os.Remove(s.path)
	}
	return err
}

// ListenSocket binds the agent's unix datagram socket at cfg.Socket with the
// configured mode, group and receive buffer. A socket file left by a crashed
// daemon is replaced; a socket another live daemon is reading is not, and
// neither is a file that is not a socket.
func ListenSocket(cfg Config) (*Socket, error) {
	path := cfg.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the directory of socket %s: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// Before the socket exists: the kernel copies the limit into it.
	qlen, raised, qerr := ensureDgramQlen(cfg.MinQueueLen)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on socket %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cannot stat socket %s: %w", path, err)
	}
	sock := &Socket{UnixConn: conn, path: path, ino: st.Ino, QueueLen: qlen, QueueRaised: raised, QueueErr: qerr}
	fail := func(err error) (*Socket, error) {
		sock.Close()
		return nil, err
	}
	if cfg.SocketGroup != "" {
		gid, err := lookupGroup(cfg.SocketGroup)
		if err != nil {
			return fail(err)
		}
		if err := os.Chown(path, -1, gid); err != nil {
			return fail(fmt.Errorf("cannot give socket %s to group %s: %w", path, cfg.SocketGroup, err))
		}
	}
	if err := os.Chmod(path, cfg.SocketMode); err != nil {
		return fail(fmt.Errorf("cannot set mode %o on socket %s: %w", cfg.SocketMode, path, err))
	}
	setReceiveBuffer(conn, cfg.ReceiveBuffer)
	return sock, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot inspect socket path %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("cannot use %s as the agent socket: it exists and is not a socket", path)
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		c.Close()
		return fmt.Errorf("cannot use %s as the agent socket: another process is bound to it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove stale socket %s: %w", path, err)
	}
	return nil
}

func lookupGroup(g string) (int, error) {
	if gid, err := strconv.Atoi(g); err == nil {
		return gid, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, fmt.Errorf("cannot find socket group %q: %w", g, err)
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return 0, fmt.Errorf("cannot use gid %q of group %q: %w", grp.Gid, g, err)
	}
	return gid, nil
}

// setReceiveBuffer asks for size bytes: as root with SO_RCVBUFFORCE, which
// may exceed net.core.rmem_max, else with SO_RCVBUF, which the kernel caps.
// What was granted is read back by ReceiveBuffer.
func setReceiveBuffer(conn *net.UnixConn, size int) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, size)
		}
	})
}

// ReceiveBuffer returns the socket's receive buffer as the kernel reports it.
func ReceiveBuffer(conn *net.UnixConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		n, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}); err != nil {
		return 0, err
	}
	return n, gerr
}

// Serve reads datagrams from conn with n readers until ctx ends, then closes
// conn and returns once every reader has stopped. Each reader owns a buffer
// one byte larger than the largest valid datagram, so an oversized datagram
// is seen as such instead of silently cut.
//
// With Config.ReadPause, the readers take turns draining the socket: one
// drains every queued datagram (a batch), hands the turn on and handles its
// batch while the next waits out the pause before draining again. A PHP
// request's datagrams then cost the daemon no wake-up of their own: on a
// busy host waking per datagram cost more CPU than handling them.
func (a *Agent) Serve(ctx context.Context, conn *Socket, n int) error {
	if size, err := ReceiveBuffer(conn.UnixConn); err == nil {
		a.self.receiveBuffer.Set(float64(size))
	}
	a.self.queueLen.Set(float64(conn.QueueLen))
	var wg sync.WaitGroup
	var pacer *drainPacer
	if a.cfg.ReadPause > 0 {
		pacer = &drainPacer{pause: a.cfg.ReadPause, queueLen: conn.QueueLen}
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if pacer != nil {
				a.readBatches(conn.UnixConn, pacer)
			} else {
				a.read(conn.UnixConn)
			}
		}()
	}
	a.ready.Store(true)
	<-ctx.Done()
	a.ready.Store(false)
	err := conn.Close()
	wg.Wait()
	return err
}

func (a *Agent) read(conn *net.UnixConn) {
	buf := make([]byte, protocol.MaxDatagramSize+1)
	st := &readerState{}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			a.readError(err)
			continue
		}
		a.Handle(buf[:n], st)
	}
}

func (a *Agent) readError(err error) {
	a.self.readErrors.Inc()
	if n, ok := a.readErrs.allow(); ok {
		a.log.Error("cannot read the agent socket", "err", err, "suppressed_since_last", n)
	}
	time.Sleep(10 * time.Millisecond) // a persistent error must not spin a core
}

// drainPacer is the readers' turn: who drains the socket next, and when.
type drainPacer struct {
	mu       sync.Mutex
	pause    time.Duration
	queueLen int       // datagrams the kernel queues before senders drop
	next     time.Time // the next drain starts no earlier (guarded by mu)
	last     time.Time // when the last drain started (guarded by mu)
}

// Batch limits: one drain takes at most this many datagrams or bytes, so a
// reader's memory stays bounded and other readers get their turn.
const (
	maxBatchDatagrams = 512
	maxBatchBytes     = 4 << 20
)

// batch holds drained datagrams back to back.
type batch struct {
	data []byte
	ends []int
}

func (b *batch) reset() { b.data, b.ends = b.data[:0], b.ends[:0] }

func (b *batch) add(p []byte) {
	b.data = append(b.data, p...)
	b.ends = append(b.ends, len(b.data))
}

func (b *batch) full() bool { return len(b.ends) >= maxBatchDatagrams || len(b.data) >= maxBatchBytes }

// readBatches is a reader under a drainPacer.
func (a *Agent) readBatches(conn *net.UnixConn, p *drainPacer) {
	rc, err := conn.SyscallConn()
	if err != nil {
		a.log.Error("cannot read the agent socket", "err", err)
		return
	}
	buf := make([]byte, protocol.MaxDatagramSize+1)
	b := &batch{data: make([]byte, 0, 64<<10)}
	st := &readerState{}
	for {
		b.reset()
		var rerr error
		p.mu.Lock()
		if d := time.Until(p.next); d > 0 {
			time.Sleep(d)
		}
		started := time.Now()
		// The callback reads until the socket is empty; returning false
		// (nothing read yet) waits for the next datagram.
		err := rc.Read(func(fd uintptr) bool {
			for !b.full() {
				n, e := syscall.Read(int(fd), buf)
				switch {
				case e == syscall.EINTR:
					continue
				case e == syscall.EAGAIN:
					return len(b.ends) > 0
				case e != nil:
					rerr = e
					return true
				}
				b.add(buf[:n])
			}
			return true
		})
		p.next = time.Now().Add(p.wait(len(b.ends), started))
		p.last = started
		p.mu.Unlock()

		start := 0
		for _, end := range b.ends {
			a.Handle(b.data[start:end], st)
			start = end
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			a.readError(err)
		} else if rerr != nil {
			a.readError(rerr)
		}
	}
}

// wait is the pause before the next drain, after a drain that started at
// started and found n datagrams: the configured pause, cut to the time in
// which datagrams arriving at the last drain's rate fill half the queue.
// Called with mu held.
func (p *drainPacer) wait(n int, started time.Time) time.Duration {
	if n >= maxBatchDatagrams {
		return 0 // more are waiting
	}
	w := p.pause
	if n > 0 && !p.last.IsZero() {
		q := p.queueLen
		if q <= 0 {
			q = 10 // the kernel's default
		}
		// n datagrams came in started-last: half the queue fills in
		// (started-last) * q/2 / n.
		if fill := started.Sub(p.last) * time.Duration(q) / time.Duration(2*n); fill < w {
			w = fill
		}
	}
	return w
}
