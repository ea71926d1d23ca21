package servertest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// KeptLease grants an etcd lease of ttl and keeps it alive, as an agent
// would, until the test ends. Primary records must be bound to a renewed
// lease: a registry server shows a primary whose lease nobody renews as
// unconfirmed.
func KeptLease(t testing.TB, cli *clientv3.Client, ttl time.Duration) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		t.Fatalf("grant lease: %v", err)
	}
	kctx, stop := context.WithCancel(context.Background())
	ch, err := cli.KeepAlive(kctx, g.ID)
	if err != nil {
		stop()
		t.Fatalf("keep lease alive: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range ch { // the client library renews; answers are only drained
		}
	}()
	t.Cleanup(func() { stop(); <-done })
	return g.ID
}

// PutPrimary writes value at key (a primary record) bound to a lease kept
// alive until the test ends, and returns the revision.
func PutPrimary(t testing.TB, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	lease := KeptLease(t, cli, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value, clientv3.WithLease(lease))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

// PutLeased is PutPrimary for helpers without a testing.TB: the lease is
// kept alive until cli is closed.
func PutLeased(cli *clientv3.Client, key, value string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := cli.Grant(ctx, 5)
	if err != nil {
		return 0, err
	}
	ch, err := cli.KeepAlive(context.Background(), g.ID)
	if err != nil {
		return 0, err
	}
	go func() {
		for range ch { // ends when cli is closed
		}
	}()
	resp, err := cli.Put(ctx, key, value, clientv3.WithLease(g.ID))
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}
