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
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
	qlen, err = readProcInt(dgramQlenPath)
	if err != nil {
		return 0, false, err
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
// batch while the next waits out the pause before draining again. They read
// a blocking descriptor of their own, outside Go's network poller: a
// datagram arriving during the pause then wakes nothing, where the poller
// would wake a thread for each. On a busy host waking per datagram cost the
// daemon more CPU than handling the datagrams.
func (a *Agent) Serve(ctx context.Context, conn *Socket, n int) error {
	if size, err := ReceiveBuffer(conn.UnixConn); err == nil {
		a.self.receiveBuffer.Set(float64(size))
	}
	a.self.queueLen.Set(float64(conn.QueueLen))
	var wg sync.WaitGroup
	var pacer *drainPacer
	if a.cfg.ReadPause > 0 {
		fd, err := detachBlocking(conn.UnixConn)
		if err != nil {
			a.log.Warn("cannot read the socket in paced batches; reading each datagram as it arrives", "err", err)
		} else {
			sendBuf, _ := readProcInt(wmemDefaultPath) // 0: the pacer assumes the kernel's default
			pacer = &drainPacer{fd: fd, pause: a.cfg.ReadPause, queueLen: conn.QueueLen, sendBuf: sendBuf}
		}
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if pacer != nil {
				a.readBatches(pacer)
			} else {
				a.read(conn.UnixConn)
			}
		}()
	}
	a.ready.Store(true)
	<-ctx.Done()
	a.ready.Store(false)
	if pacer != nil {
		pacer.stop.Store(true)
		wg.Wait()
		_ = syscall.Close(pacer.fd)
		_ = conn.Close() // the poller's descriptor is closed already
		return nil
	}
	err := conn.Close()
	wg.Wait()
	return err
}

// wmemDefaultPath holds the send buffer a new socket gets: how many bytes
// of its datagrams a PHP worker may have waiting before its sends fail.
var wmemDefaultPath = "/proc/sys/net/core/wmem_default"

// readProcInt reads an integer from a /proc/sys file.
func readProcInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("cannot parse %s: %w", path, err)
	}
	return n, nil
}

// pacedReadTimeout bounds a paced reader's blocking read, so it notices a
// stop while the socket is idle.
const pacedReadTimeout = 200 * time.Millisecond

// detachBlocking returns a blocking descriptor of conn's socket, with a
// receive timeout, and closes conn's own descriptor, which takes the
// socket out of Go's network poller. The socket file stays.
func detachBlocking(conn *net.UnixConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("cannot duplicate the socket descriptor: %w", derr)
	}
	tv := syscall.NsecToTimeval(pacedReadTimeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("cannot set the socket's receive timeout: %w", err)
	}
	syscall.CloseOnExec(fd)
	// Closing conn removes its descriptor from the poller; O_NONBLOCK
	// belongs to the socket, so clear it once conn no longer uses it.
	if err := conn.Close(); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("cannot make the socket blocking: %w", err)
	}
	return fd, nil
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
	if n, ok := a.readErrs.Allow(); ok {
		a.log.Error("cannot read the agent socket", "err", err, "suppressed_since_last", n)
	}
	time.Sleep(10 * time.Millisecond) // a persistent error must not spin a core
}

// drainPacer is the paced readers' socket and turn: who drains next, and when.
type drainPacer struct {
	fd       int // blocking, with a receive timeout
	stop     atomic.Bool
	mu       sync.Mutex
	pause    time.Duration
	queueLen int       // datagrams the kernel queues before senders drop
	sendBuf  int       // bytes a sender may have unread (net.core.wmem_default)
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
func (a *Agent) readBatches(p *drainPacer) {
	buf := make([]byte, protocol.MaxDatagramSize+1)
	b := &batch{data: make([]byte, 0, 64<<10)}
	st := &readerState{}
	for !p.stop.Load() {
		b.reset()
		p.mu.Lock()
		if d := time.Until(p.next); d > 0 {
			time.Sleep(d)
		}
		started := time.Now()
		err := p.drain(b, buf)
		if len(b.ends) > 0 {
			p.next = time.Now().Add(p.wait(len(b.ends), len(b.data), started))
			p.last = started
		}
		p.mu.Unlock()

		start := 0
		for _, end := range b.ends {
			a.Handle(b.data[start:end], st)
			start = end
		}
		if err != nil {
			a.readError(err)
		}
	}
}

// drain waits (up to pacedReadTimeout) for a datagram, then takes every
// queued one without waiting, up to the batch limits.
func (p *drainPacer) drain(b *batch, buf []byte) error {
	flags := 0 // the first read blocks
	for !b.full() {
		n, err := recv(p.fd, buf, flags)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return nil // empty, or the timeout passed with nothing
		case err != nil:
			return err
		}
		b.add(buf[:n])
		flags = syscall.MSG_DONTWAIT
	}
	return nil
}

// recv is recvfrom(2) without the sender's address, which syscall.Recvfrom
// would allocate for every datagram.
func recv(fd int, buf []byte, flags int) (int, error) {
	r, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// wait is the pause before the next drain, after a drain that started at
// started and found n datagrams of size bytes in all. Two limits make
// senders drop (a blocking sender waits): the socket's queue of datagrams,
// and each sender's send buffer, which holds its datagrams until they are
// read. The pause is the configured one, cut to the time in which traffic
// at the last drain's rate fills half of either (as if one sender sent it
// all), and none when half of either was full already or when it would be
// shorter than a millisecond, below which sleeping costs more than it
// saves. Called with mu held.
func (p *drainPacer) wait(n, bytes int, started time.Time) time.Duration {
	q := p.queueLen
	if q <= 0 {
		q = 10 // the kernel's default
	}
	sb := p.sendBuf
	if sb <= 0 {
		sb = 212992 // the kernel's default net.core.wmem_default
	}
	if n >= maxBatchDatagrams || 2*n >= q || 2*bytes >= sb {
		return 0
	}
	w := p.pause
	if n > 0 && !p.last.IsZero() {
		// n datagrams came in started-last: half the queue fills in
		// (started-last) * q/2 / n; half a send buffer likewise.
		since := started.Sub(p.last)
		if fill := since * time.Duration(q) / time.Duration(2*n); fill < w {
			w = fill
		}
		if bytes > 0 {
			if fill := since * time.Duration(sb) / time.Duration(2*bytes); fill < w {
				w = fill
			}
		}
	}
	if w < time.Millisecond {
		return 0
	}
	return w
}
