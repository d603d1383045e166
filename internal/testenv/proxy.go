package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TCPProxy forwards loopback connections to a target address until
// closed; Close cuts every connection and its port then refuses new ones,
// as a server that became unreachable.
type TCPProxy struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// StartTCPProxy listens on a free loopback port, forwarding to target; it
// is closed when the test ends.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProxy{l: l, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *TCPProxy) Addr() string { return p.l.Addr().String() }

func (p *TCPProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close(); c.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, u); c.Close(); u.Close() })
	}
}

// Close stops listening and cuts every connection, then waits for the
// proxy's goroutines. It is idempotent.
func (p *TCPProxy) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.l.Close()
		for _, c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
