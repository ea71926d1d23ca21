package main

import (
	"net"
	"sync"
	"sync/atomic"
)

// proxy forwards TCP connections to target. Blackholing makes it drop every
// byte in both directions while closing nothing: to etcd, the agent behind it
// looks crashed (keepalives stop, no FIN, no RST). Healing closes the
// connections that lost bytes, as a restarted host's connections would be
// gone, and forwards again.
type proxy struct {
	ln     net.Listener
	target string
	black  atomic.Bool
	wg     sync.WaitGroup

	mu       sync.Mutex
	conns    map[*proxyConn]struct{}
	closed   bool
	accepted int // connections accepted so far
}

// proxyConn is one client connection and its upstream.
type proxyConn struct {
	in, out net.Conn
	tainted atomic.Bool // bytes were dropped: the stream is broken
}

func (c *proxyConn) close() {
	_ = c.in.Close()
	_ = c.out.Close()
}

// newProxy listens on a free loopback port in front of target (host:port).
func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[*proxyConn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// url is the proxy as an etcd endpoint.
func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

// blackhole starts dropping all traffic, on open and new connections alike.
func (p *proxy) blackhole() { p.black.Store(true) }

// heal closes every connection that lost bytes and forwards again.
func (p *proxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.black.Store(false)
	for c := range p.conns {
		if c.tainted.Load() {
			c.close()
		}
	}
}

// connections is how many connections the proxy has accepted.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// close stops the proxy, closes every connection and waits for its goroutines.
func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		c := &proxyConn{in: in, out: out}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.close()
			return
		}
		p.conns[c] = struct{}{}
		p.accepted++
		p.mu.Unlock()
		var pumps sync.WaitGroup
		pumps.Go(func() { p.pump(c, out, in) })
		pumps.Go(func() { p.pump(c, in, out) })
		p.wg.Go(func() {
			pumps.Wait()
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		})
	}
}

// pump copies src to dst, dropping bytes while blackholed. When either side
// ends it closes both, so the other pump ends too.
func (p *proxy) pump(c *proxyConn, dst, src net.Conn) {
	defer c.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.black.Load() {
				c.tainted.Store(true)
				if !p.black.Load() {
					return // healed meanwhile, maybe past this connection
				}
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
