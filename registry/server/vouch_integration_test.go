package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// agentLease is a lease renewed the way an agent renews it (KeepAliveOnce
// every TTL/3) until stop, and again after renew.
type agentLease struct {
	t   *testing.T
	cli *clientv3.Client
	id  clientv3.LeaseID
	ttl time.Duration

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	renewed time.Time // send time of the last answered renewal
}

func newAgentLease(t *testing.T, cli *clientv3.Client, ttl time.Duration) *agentLease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sent := time.Now()
	g, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	l := &agentLease{t: t, cli: cli, id: g.ID, ttl: ttl, renewed: sent}
	l.renew()
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *agentLease) renew() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	done := l.done
	go func() {
		defer close(done)
		for {
			sent := time.Now()
			actx, acancel := context.WithTimeout(ctx, l.ttl/3)
			_, err := l.cli.KeepAliveOnce(actx, l.id)
			acancel()
			if err == nil {
				l.mu.Lock()
				l.renewed = sent
				l.mu.Unlock()
			}
			wait := l.ttl / 3
			if err != nil {
				wait = 250 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// stop stops renewing and returns the send time of the last answered
// renewal: etcd cannot expire the lease before that plus the TTL.
func (l *agentLease) stop() time.Time {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.cancel = nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

func (l *agentLease) putPrimary(service, host string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec := registry.MustEncode(&pb.Primary{Host: host, Address: host + ":5432", Epoch: 1, Zone: "z1"})
	if _, err := l.cli.Put(ctx, registry.PrimaryKey(service), rec, clientv3.WithLease(l.id)); err != nil {
		l.t.Fatalf("put primary: %v", err)
	}
}

func confirmedRW(v *pb.View) bool {
	return v.GetPrimary() != nil && !v.GetUnconfirmed() && v.GetStatus() == pb.Status_STATUS_READ_WRITE
}

func unconfirmed(v *pb.View) bool {
	return v.GetPrimary() != nil && v.GetUnconfirmed() && v.GetStatus() != pb.Status_STATUS_READ_WRITE
}

// An agent that stops renewing its lease (frozen, killed) gets its primary
// marked unconfirmed well before the lease can expire, and confirmed again
// when it renews again. Every change of the mark reaches subscribers.
func TestPrimaryUnconfirmedWhenLeaseNotRenewed(t *testing.T) {
	const ttl = 6 * time.Second
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	putInstance(t, cli, passing("db", "h1"))
	putInstance(t, cli, passing("db", "h2"))
	lease := newAgentLease(t, cli, ttl)
	lease.putPrimary("db", "h1")
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"db"}})
	w.WaitView("db", 5*time.Second, "h1 primary, confirmed", confirmedRW)

	last := lease.stop()
	got := w.WaitView("db", 2*ttl, "h1 unconfirmed after its agent stopped renewing", unconfirmed)
	// A live agent renews every TTL/3; the mark comes once half the TTL
	// is left, seen through polls: it must come before the lease expires.
	if expiry := last.Add(ttl); !got.At.Before(expiry) {
		t.Errorf("marked unconfirmed at %v, after the lease could expire (%v)", got.At.Sub(last), ttl)
	}
	if v := got.View; v.GetPrimary().GetHost() != "h1" || v.GetStatus() != pb.Status_STATUS_READ_ONLY {
		t.Errorf("unconfirmed view: %s primary %v, want h1 kept for information, READ_ONLY", servertest.Describe(v), v.GetPrimary())
	}

	lease.renew()
	// A renewal is seen within a TTL/3 and a few polls.
	w.WaitView("db", 2*ttl, "h1 confirmed again after renewing", confirmedRW)
}

// After a quorum loss, etcd's new leader refreshes every lease by a whole
// TTL: a primary whose agent stopped renewing must not come back
// READ_WRITE, while one whose agent keeps renewing comes back confirmed.
func TestQuorumRecoveryNeedsRenewalToConfirm(t *testing.T) {
	const ttl = 5 * time.Second
	c := servertest.StartCluster(t, 3)
	cli := servertest.NewClient(t, c.Servers[0].Member().ClientURLs()...)
	for _, svc := range []string{"db", "kv"} {
		putInstance(t, cli, passing(svc, "h1"))
		putInstance(t, cli, passing(svc, "h2"))
	}
	live := newAgentLease(t, cli, ttl)
	live.putPrimary("db", "h1")
	frozen := newAgentLease(t, cli, ttl)
	frozen.putPrimary("kv", "h1")
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"db", "kv"}})
	w.WaitView("db", 5*time.Second, "db confirmed", confirmedRW)
	w.WaitView("kv", 5*time.Second, "kv confirmed", confirmedRW)

	frozen.stop()
	c.Stop(1)
	c.Stop(2)
	hub := c.Servers[0].Hub()
	servertest.WaitUntil(t, 30*time.Second, "server 0 stale", hub.Stale)
	// Wait until the member has no leader, so that the quorum's return
	// elects one, which refreshes every lease.
	member := c.Servers[0].Member().ClientURLs()[0]
	servertest.WaitFor(t, 30*time.Second, "member 0 without a leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := cli.Status(ctx, member)
		if err != nil {
			return err
		}
		if st.Leader != 0 {
			return fmt.Errorf("leader %x at term %d", st.Leader, st.RaftTerm)
		}
		return nil
	})
	c.Restart(1)
	c.Restart(2)
	servertest.WaitUntil(t, 30*time.Second, "server 0 fresh again", func() bool { return !hub.Stale() })
	recovered := len(w.Messages())

	// The live agent renews again within TTL/3 of the quorum's return; the
	// renewal is seen a few polls later.
	w.WaitView("db", 3*ttl, "db confirmed after the quorum came back", func(v *pb.View) bool {
		return confirmedRW(v) && !v.GetStale()
	})
	// The frozen agent's lease lives on a TTL after the refresh; its
	// record goes when it expires. Until then it is never READ_WRITE.
	w.WaitView("kv", 4*ttl, "kv's record gone with its lease", func(v *pb.View) bool {
		return v.GetPrimary() == nil && !v.GetStale() && v.GetStatus() == pb.Status_STATUS_READ_ONLY
	})
	for i, m := range w.Messages() {
		for _, v := range m.GetViews() {
			if v.GetService() == "kv" && i >= recovered && v.GetStatus() == pb.Status_STATUS_READ_WRITE && v.GetPrimary() != nil {
				t.Errorf("message %d after the quorum came back: %s", i, servertest.Describe(v))
			}
		}
	}
	// Nor right at the return: the last kv view before it was not
	// READ_WRITE either (the mark came while the quorum was lost).
	var before *pb.View
	for _, m := range w.Messages()[:recovered] {
		for _, v := range m.GetViews() {
			if v.GetService() == "kv" {
				before = v
			}
		}
	}
	if before.GetStatus() == pb.Status_STATUS_READ_WRITE {
		t.Errorf("kv when the quorum came back: %s", servertest.Describe(before))
	}
}
