package servertest

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a target. Blackhole cuts them off the
// way a network partition does: connections stay open, nothing is delivered
// in either direction and nothing fails fast; on Heal what was sent
// meanwhile arrives late, as TCP retransmission would deliver it, unless an
// end gave up on the connection first. (Dropping bytes from the middle of a
// stream instead would desynchronise HTTP/2 for good, which no real network
// does.)
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	black  bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewProxy starts a proxy on a free loopback port in front of target; it is
// closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is host:port of the proxy.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is http://Addr, for etcd endpoints.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Blackhole stops delivering traffic in both directions.
func (p *Proxy) Blackhole() { p.set(true) }

// Heal delivers what was held back and forwards traffic again.
func (p *Proxy) Heal() { p.set(false) }

func (p *Proxy) set(black bool) {
	p.mu.Lock()
	p.black = black
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Close stops the proxy and every connection through it.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.black = false
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// waitDeliverable blocks while the proxy is blackholed; false once closed.
func (p *Proxy) waitDeliverable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.black && p.conns != nil {
		p.cond.Wait()
	}
	return p.conns != nil
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		if p.conns != nil {
			delete(p.conns, c)
		}
		return true
	}
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
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
		if !p.track(in, true) || !p.track(out, true) {
			_ = in.Close()
			_ = out.Close()
			return
		}
		p.wg.Go(func() { p.pump(out, in) })
		p.wg.Go(func() { p.pump(in, out) })
	}
}

// pump copies src to dst, holding bytes while blackholed; when either side
// closes it closes both.
func (p *Proxy) pump(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.track(dst, false)
		p.track(src, false)
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitDeliverable() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
