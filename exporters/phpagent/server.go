package phpagent

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/bitville/bitville-apm/internal/protocol"
)

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
