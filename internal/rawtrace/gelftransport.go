package rawtrace

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"time"
)

// GELF over UDP: a message larger than one datagram is cut into chunks,
// each with a 12-byte header (magic 0x1e 0x0f, an 8-byte message id, the
// sequence number, the chunk count); a GELF input reassembles at most
// 128 chunks of one message.
const (
	gelfDatagramBytes    = 1420 // what fits a 1500-byte Ethernet frame with IP and UDP headers, and what Graylog's own clients send
	gelfChunkHeaderBytes = 12
	gelfMaxChunks        = 128
	gelfChunkDataBytes   = gelfDatagramBytes - gelfChunkHeaderBytes
)

// gelfUDP sends gzip-compressed messages in datagrams.
type gelfUDP struct {
	addr  string
	conn  net.Conn
	zbuf  bytes.Buffer
	zw    *gzip.Writer
	chunk []byte
}

func newGELFUDP(addr string) *gelfUDP {
	u := &gelfUDP{addr: addr, chunk: make([]byte, gelfDatagramBytes)}
	u.zw = gzip.NewWriter(&u.zbuf)
	return u
}

func (u *gelfUDP) send(ctx context.Context, msg []byte) error {
	u.zbuf.Reset()
	u.zw.Reset(&u.zbuf)
	if _, err := u.zw.Write(msg); err != nil {
		return fmt.Errorf("cannot compress a GELF message: %w", err)
	}
	if err := u.zw.Close(); err != nil {
		return fmt.Errorf("cannot compress a GELF message: %w", err)
	}
	z := u.zbuf.Bytes()
	count := (len(z) + gelfChunkDataBytes - 1) / gelfChunkDataBytes
	if len(z) > gelfDatagramBytes && count > gelfMaxChunks {
		return errOversized
	}
	conn, err := u.connect(ctx)
	if err != nil {
		return err
	}
	stop := setWriteDeadline(ctx, conn)
	defer stop()
	if len(z) <= gelfDatagramBytes {
		_, err = conn.Write(z)
	} else {
		err = u.writeChunks(conn, z, count)
	}
	if err != nil {
		u.drop()
		return fmt.Errorf("cannot send a GELF datagram to %s: %w", u.addr, err)
	}
	return nil
}

// writeChunks sends z in count chunks under one random message id.
func (u *gelfUDP) writeChunks(conn net.Conn, z []byte, count int) error {
	c := u.chunk
	c[0], c[1] = 0x1e, 0x0f
	binary.BigEndian.PutUint64(c[2:10], rand.Uint64())
	c[11] = byte(count)
	for seq := 0; seq < count; seq++ {
		c[10] = byte(seq)
		n := copy(c[gelfChunkHeaderBytes:], z[seq*gelfChunkDataBytes:])
		if _, err := conn.Write(c[:gelfChunkHeaderBytes+n]); err != nil {
			return err
		}
	}
	return nil
}

// connect returns the connected socket, made anew after an error (which
// may be a refusal the kernel learnt of from an ICMP answer).
func (u *gelfUDP) connect(ctx context.Context) (net.Conn, error) {
	if u.conn == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", u.addr)
		if err != nil {
			return nil, fmt.Errorf("cannot reach the GELF input %s: %w", u.addr, err)
		}
		u.conn = c
	}
	return u.conn, nil
}

func (u *gelfUDP) drop() {
	if u.conn != nil {
		_ = u.conn.Close()
		u.conn = nil
	}
}

func (u *gelfUDP) close() error {
	u.drop()
	return nil
}

// gelfTCP sends uncompressed messages, each ended by a NUL byte, on one
// connection kept open between batches.
type gelfTCP struct {
	addr string
	conn net.Conn
	buf  []byte
}

func newGELFTCP(addr string) *gelfTCP { return &gelfTCP{addr: addr} }

func (t *gelfTCP) send(ctx context.Context, msg []byte) error {
	if t.conn != nil && !peerOpen(t.conn) {
		t.drop()
	}
	if t.conn == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", t.addr)
		if err != nil {
			return fmt.Errorf("cannot connect to the GELF input %s: %w", t.addr, err)
		}
		t.conn = c
	}
	stop := setWriteDeadline(ctx, t.conn)
	defer stop()
	t.buf = append(append(t.buf[:0], msg...), 0)
	if _, err := t.conn.Write(t.buf); err != nil {
		t.drop()
		return fmt.Errorf("cannot send to the GELF input %s: %w", t.addr, err)
	}
	return nil
}

// peerOpen reports whether the receiver has not closed conn. A GELF TCP
// input never writes, so anything readable — the end of the stream
// above all — means the connection is done; without this check the
// first message written after Graylog closed an idle connection would be
// lost without an error.
func peerOpen(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = errors.Is(rerr, syscall.EAGAIN) || rerr == nil && n > 0
		return true // never wait for readiness
	})
	return err == nil && open
}

func (t *gelfTCP) drop() {
	if t.conn != nil {
		_ = t.conn.Close()
		t.conn = nil
	}
}

func (t *gelfTCP) close() error {
	t.drop()
	return nil
}

// gelfHTTP posts each message as its own request, as Graylog's GELF HTTP
// input takes them (it answers 202).
type gelfHTTP struct{ p *httpPoster }

func (h gelfHTTP) send(ctx context.Context, msg []byte) error {
	return h.p.post(ctx, msg, "application/json", "")
}

func (h gelfHTTP) close() error {
	h.p.close()
	return nil
}

// setWriteDeadline bounds writes on conn by ctx: by its deadline, and by
// its cancellation until the returned stop is called.
func setWriteDeadline(ctx context.Context, conn net.Conn) (stop func() bool) {
	d, _ := ctx.Deadline() // zero, no deadline, when ctx has none
	_ = conn.SetWriteDeadline(d)
	return context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Now()) })
}
