package servertest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Gate forwards TCP connections to a target at an address that can go
// away and come back, the way a registry server that dies and restarts does
// to its clients: Off closes every connection and refuses new ones, On
// accepts again at the same address. (Proxy instead keeps connections open
// and silent, as a network partition does.)
type Gate struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewGate opens a gate on a free loopback port in front of target; it is
// closed when the test ends.
func NewGate(t testing.TB, target string) *Gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gate listen: %v", err)
	}
	g := &Gate{t: t, addr: ln.Addr().String(), target: target}
	g.serve(ln)
	t.Cleanup(g.Off)
	return g
}

// Addr is host:port of the gate.
func (g *Gate) Addr() string { return g.addr }

// Off closes the listener and every connection through the gate: clients
// see their streams fail and new connections refused.
func (g *Gate) Off() {
	g.mu.Lock()
	if g.ln != nil {
		_ = g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
	g.mu.Unlock()
	g.wg.Wait()
}

// On listens at the gate's address again. It fails the test when the
// address cannot be bound within a few seconds.
func (g *Gate) On() {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", g.addr)
		if err == nil {
			g.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("gate: listen on %s again: %v", g.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *Gate) serve(ln net.Listener) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ln = ln
	g.conns = map[net.Conn]struct{}{}
	g.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", g.target)
			if err != nil {
				_ = in.Close()
				continue
			}
			if !g.track(in, out) {
				return
			}
			g.wg.Go(func() { g.pump(out, in) })
			g.wg.Go(func() { g.pump(in, out) })
		}
	})
}

// track registers a connection pair; false (both closed) once the gate is off.
func (g *Gate) track(in, out net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		_ = in.Close()
		_ = out.Close()
		return false
	}
	g.conns[in] = struct{}{}
	g.conns[out] = struct{}{}
	return true
}

func (g *Gate) pump(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		g.mu.Lock()
		delete(g.conns, dst)
		delete(g.conns, src)
		g.mu.Unlock()
	}()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
