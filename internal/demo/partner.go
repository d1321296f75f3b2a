package demo

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// partner is the shop's slow partner service (APP_PARTNER_ADDR): a TCP
// server on loopback answering each line "QUOTE <sku>" with "OK <cents>"
// after a delay, the way a remote API that has become slow holds the
// workers that call it.
type partner struct {
	ln    net.Listener
	delay time.Duration
	done  chan struct{}
	once  sync.Once
	err   error // of closing the listener
	wg    sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// partnerIdle is how long the partner keeps a connection that sends
// nothing.
const partnerIdle = 30 * time.Second

// startPartner listens on a free loopback port and serves until Close.
func startPartner(delay time.Duration) (*partner, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot start the partner service: %w", err)
	}
	p := &partner{ln: ln, delay: delay, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr returns host:port.
func (p *partner) Addr() string { return p.ln.Addr().String() }

func (p *partner) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a connection reset before it was accepted
		}
		p.mu.Lock()
		select {
		case <-p.done: // Close has begun: it may have dropped the others already
			c.Close()
			p.mu.Unlock()
			continue
		default:
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.handle(c)
	}
}

// handle answers the quote requests of one connection.
func (p *partner) handle(c net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReader(c)
	for {
		_ = c.SetDeadline(time.Now().Add(partnerIdle))
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		sku, ok := strings.CutPrefix(strings.TrimSpace(line), "QUOTE ")
		select {
		case <-p.done:
			return
		case <-time.After(p.delay):
		}
		answer := "ERR unknown request\n"
		if ok && sku != "" {
			answer = "OK 499\n" // a flat rate, whatever the product
		}
		if _, err := c.Write([]byte(answer)); err != nil {
			return
		}
	}
}

// Close stops listening, drops the open connections and waits for their
// handlers. Calls after the first return the first one's error.
func (p *partner) Close() error {
	p.once.Do(func() {
		close(p.done)
		p.err = p.ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p.err
}
