package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease is an etcd lease kept alive by the agent's own loop rather than the
// client library's, so the agent knows a safe deadline: the send time of the
// last keepalive etcd answered, plus the TTL. etcd cannot expire the lease
// before that instant, and after it the agent must assume the lease is gone.
type Lease struct {
	id  clientv3.LeaseID
	ttl time.Duration
	cli *clientv3.Client

	mu       sync.Mutex
	deadline time.Time
	lost     chan struct{}
	lostOnce sync.Once
	// onRenew, if set, is called with each new deadline: the agent feeds
	// the guard from here, so that feeding never waits on an elector.
	onRenew func(deadline time.Time)
}

// grantLease creates a lease of ttl.
func grantLease(ctx context.Context, cli *clientv3.Client, ttl time.Duration) (*Lease, error) {
	sent := time.Now()
	resp, err := cli.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return nil, err
	}
	l := &Lease{id: resp.ID, ttl: time.Duration(resp.TTL) * time.Second, cli: cli, lost: make(chan struct{})}
	l.deadline = sent.Add(l.ttl)
	return l, nil
}

// resumeLease takes over a lease an earlier run of this agent left alive
// (a restart within the TTL), so its keys — the primary role included —
// survive the restart. It fails when the lease is gone.
func resumeLease(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID, ttl time.Duration) (*Lease, error) {
	sent := time.Now()
	resp, err := cli.KeepAliveOnce(ctx, id)
	if err != nil {
		return nil, err
	}
	if resp.TTL <= 0 {
		return nil, rpctypes.ErrLeaseNotFound
	}
	l := &Lease{id: id, ttl: ttl, cli: cli, lost: make(chan struct{})}
	l.deadline = sent.Add(time.Duration(resp.TTL) * time.Second)
	return l, nil
}

// LeaseID is the etcd lease ID.
func (l *Lease) LeaseID() clientv3.LeaseID { return l.id }

// TTL of the lease.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Deadline is the latest instant the lease is known to be alive.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Lost is closed once the lease is known or presumed gone.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// renewTimeout bounds one renewal attempt. A member answers a renewal in
// milliseconds (no raft write); one that does not within a second is frozen
// or cut off, and the attempt is better repeated on another member than
// waited for. clientv3's KeepAliveOnce itself retries at once when the
// prober closes the connection under it (Unavailable).
const renewTimeout = time.Second

// keepAlive renews the lease every TTL/3 until ctx is done or the lease is
// lost: etcd says it no longer exists, or the deadline passes without an
// answered renewal (etcd unreachable for a whole TTL).
func (l *Lease) keepAlive(ctx context.Context) {
	period := l.ttl / 3
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.lost:
			return
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, min(period, renewTimeout))
		err := l.renew(actx)
		cancel()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			l.markLost()
			return
		}
		if time.Now().After(l.Deadline()) {
			l.markLost()
			return
		}
		// Retry sooner after a failure so a brief outage costs little: at
		// once after a timeout (the wait is already spent; round robin
		// sends the retry to another member), after a pause otherwise so
		// a member that refuses at once is not hammered.
		next := period
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			next = 0
		case err != nil:
			next = min(period, 250*time.Millisecond)
		}
		t.Reset(next)
	}
}

// renew sends one keepalive and, when etcd answers, moves the deadline to
// its send time plus the TTL etcd granted. It returns ErrLeaseNotFound when
// the lease is gone.
func (l *Lease) renew(ctx context.Context) error {
	sent := time.Now()
	resp, err := l.cli.KeepAliveOnce(ctx, l.id)
	if err == nil && resp.TTL <= 0 || rpctypes.Error(err) == rpctypes.ErrLeaseNotFound {
		return rpctypes.ErrLeaseNotFound
	}
	if err != nil {
		return err
	}
	d := sent.Add(time.Duration(resp.TTL) * time.Second)
	l.mu.Lock()
	if d.After(l.deadline) {
		l.deadline = d
	}
	on := l.onRenew
	l.mu.Unlock()
	if on != nil {
		on(d)
	}
	return nil
}

// Renew renews the lease once now (the elector does before a promotion, so
// that the promote hook gets a whole TTL less the fence margin).
func (l *Lease) Renew(ctx context.Context) error {
	err := l.renew(ctx)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		l.markLost()
	}
	return err
}

// revoke ends the lease so every key bound to it vanishes at once.
func (l *Lease) revoke(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := l.cli.Revoke(ctx, l.id)
	l.markLost()
	return err
}
