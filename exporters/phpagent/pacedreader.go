package phpagent

import (
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/bitville/bitville-apm/internal/protocol"
)

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
	// The highest recent arrival rates, datagrams and charged bytes per
	// second, fading by half every rateHalfLife (guarded by mu).
	dgRate, byteRate float64
}

// rateHalfLife is how fast the pacer forgets a burst: one drain's rate is
// a few datagrams over a few milliseconds, too noisy to set the pause
// alone, and a pause set by a lull before the next burst made a fast
// sender drop a fifth of its datagrams.
const rateHalfLife = time.Second

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
	// charged is what the datagrams held of their senders' send buffers
	// while queued (chargedSize of each).
	charged int
}

func (b *batch) reset() { b.data, b.ends, b.charged = b.data[:0], b.ends[:0], 0 }

func (b *batch) add(p []byte) {
	b.data = append(b.data, p...)
	b.ends = append(b.ends, len(b.data))
	b.charged += chargedSize(len(p))
}

// chargedSize is about what a queued datagram of n bytes holds of its
// sender's send buffer: the kernel charges a socket buffer's whole
// allocation, n and its ~320-byte tail rounded up to a power of two, plus
// the ~256-byte buffer head. Measured: 167 datagrams of 600 bytes filled a
// default 212,992-byte send buffer (1,275 bytes each; this says 1,280);
// a 7 KiB end message holds 8.4 KiB.
func chargedSize(n int) int {
	const tail, head = 320, 256
	size := 512
	for size < n+tail {
		size <<= 1
	}
	return size + head
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
			p.next = time.Now().Add(p.wait(len(b.ends), b.charged, started))
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
// started and found n datagrams, which held bytes of their senders' send
// buffers in all (chargedSize). Two limits make senders drop (a blocking
// sender waits): the socket's queue of datagrams, and each sender's send
// buffer, which holds its datagrams until they are read. The pause is the
// configured one, cut to the time in which traffic at the recent highest
// rate fills half of either (as if one sender sent it all), and none when
// half of either was full already or when it would be shorter than a
// millisecond, below which sleeping costs more than it saves. Called with
// mu held.
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
		// n datagrams came in started-last; the rates are the higher of
		// this drain's and the recent ones, and half the queue or half a
		// send buffer fills at them in the time given.
		since := max(started.Sub(p.last), time.Microsecond).Seconds()
		fade := math.Exp2(-since / rateHalfLife.Seconds())
		p.dgRate = max(float64(n)/since, p.dgRate*fade)
		p.byteRate = max(float64(bytes)/since, p.byteRate*fade)
		if fill := time.Duration(float64(q) / 2 / p.dgRate * float64(time.Second)); fill < w {
			w = fill
		}
		if p.byteRate > 0 {
			if fill := time.Duration(float64(sb) / 2 / p.byteRate * float64(time.Second)); fill < w {
				w = fill
			}
		}
	}
	if w < time.Millisecond {
		return 0
	}
	return w
}
