package elector

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeLease is a Lease whose deadline the test moves by hand.
type fakeLease struct {
	mu       sync.Mutex
	deadline time.Time
}

func (l *fakeLease) LeaseID() clientv3.LeaseID   { return 1 }
func (l *fakeLease) TTL() time.Duration          { return 2 * time.Second }
func (l *fakeLease) Lost() <-chan struct{}       { return nil }
func (l *fakeLease) Renew(context.Context) error { return nil }
func (l *fakeLease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// A primary frozen past its fence point (SIGSTOP, docker pause) must stop
// acting the moment it runs again, whether or not Run's loop has woken up.
func TestActingEndsAtTheFencePointWithoutTheLoop(t *testing.T) {
	l := &fakeLease{deadline: time.Now().Add(2 * time.Second)}
	var lease Lease = l
	e := New(Config{Service: "db"})
	if e.Acting() {
		t.Fatal("a new elector acts")
	}
	e.held.Store(&lease)
	e.acting.Store(true)
	if !e.Acting() {
		t.Fatal("not acting well before the fence point")
	}
	// The default margin is TTL/4 = 500ms: 300ms before the deadline is past it.
	l.mu.Lock()
	l.deadline = time.Now().Add(300 * time.Millisecond)
	l.mu.Unlock()
	if e.Acting() {
		t.Fatal("still acting past the fence point")
	}
}

// fakeGuard acknowledged fence points up to until, for epoch.
type fakeGuard struct {
	epoch int64
	until time.Time
}

func (g *fakeGuard) Arm(context.Context, int64, time.Time) error { return nil }
func (g *fakeGuard) Disarm(context.Context, int64) error         { return nil }
func (g *fakeGuard) Until(epoch int64) time.Time {
	if epoch != g.epoch {
		return time.Time{}
	}
	return g.until
}

// The primary never acts past the last fence point its guard acknowledged,
// even when the lease would allow more: the guard demotes the service then.
func TestActingEndsAtTheGuardsFencePoint(t *testing.T) {
	l := &fakeLease{deadline: time.Now().Add(10 * time.Second)}
	var lease Lease = l
	g := &fakeGuard{epoch: 5, until: time.Now().Add(time.Hour)}
	e := New(Config{Service: "db", Guard: g})
	e.held.Store(&lease)
	e.epoch.Store(5)
	e.acting.Store(true)
	if !e.Acting() {
		t.Fatal("not acting with lease and guard ahead")
	}
	g.until = time.Now().Add(-time.Millisecond)
	if e.Acting() {
		t.Fatal("acting past the guard's fence point")
	}
	g.until, g.epoch = time.Now().Add(time.Hour), 4
	if e.Acting() {
		t.Fatal("acting on a guard armed for another epoch")
	}
}

// An acting primary's etcd calls end by its fence point, whatever their own
// timeout: a call to an etcd member that stopped answering must never hold
// the fence back (it once fenced 0.3 s before the deadline instead of 1.25 s).
func TestCallsOfAnActingPrimaryEndByTheFencePoint(t *testing.T) {
	l := &fakeLease{deadline: time.Now().Add(700 * time.Millisecond)} // fence point 200ms from now (margin 500ms)
	e := New(Config{Service: "db"})
	e.lease = l
	e.s.acting = true
	ctx, cancel := e.callContext(context.Background(), 5*time.Second)
	defer cancel()
	d, ok := ctx.Deadline()
	if !ok || d.After(e.fencePoint()) {
		t.Fatalf("call deadline %v; want by the fence point %v", d, e.fencePoint())
	}
	e.s.acting = false
	ctx2, cancel2 := e.callContext(context.Background(), 5*time.Second)
	defer cancel2()
	if d2, _ := ctx2.Deadline(); time.Until(d2) < 4*time.Second {
		t.Fatalf("a standby's call is cut to %v; want its own timeout", time.Until(d2))
	}
}
