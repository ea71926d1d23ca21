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
