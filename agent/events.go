package agent

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// eventRetention is how long role-change events are kept.
const eventRetention = 7 * 24 * time.Hour

// writeEvents stores role-change events in the background so that the
// elector never waits on etcd for its history. Events that cannot be
// written within a few tries are logged and dropped: they are history, not
// state.
func (a *Agent) writeEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			a.drainEvents()
			return
		case ev := <-a.events:
			a.writeEvent(ctx, ev)
		}
	}
}

// drainEvents writes what is queued at shutdown, briefly.
func (a *Agent) drainEvents() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		select {
		case ev := <-a.events:
			a.writeEvent(ctx, ev)
		default:
			return
		}
	}
}

// writeEvent stores ev at events/<service>/<revision>, the revision being
// the one its own write creates (a guarded create retried on collision),
// under a lease of eventRetention shared by a day's events.
func (a *Agent) writeEvent(ctx context.Context, ev *pb.Event) {
	for try := 0; try < 5 && ctx.Err() == nil; try++ {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := a.appendEvent(wctx, ev)
		cancel()
		if err == nil {
			return
		}
		a.log.Debug("agent: writing event failed; retrying", "err", err)
		sleepCtx(ctx, 500*time.Millisecond)
	}
	a.log.Warn("agent: dropped a role-change event", "service", ev.GetService(), "kind", ev.GetKind(), "reason", ev.GetReason())
}

// eventLeaseReuse is how long one events lease serves new events: an
// event lives between Retention − eventLeaseReuse and Retention, and an
// agent holds at most Retention / eventLeaseReuse such leases.
const eventLeaseReuse = 24 * time.Hour

// eventLease returns a lease for new events, granting one when the current
// one is older than eventLeaseReuse. Only writeEvents' goroutine calls it.
func (a *Agent) eventLease(ctx context.Context) (clientv3.LeaseID, error) {
	if a.evLease != 0 && time.Since(a.evLeaseAt) < eventLeaseReuse {
		return a.evLease, nil
	}
	resp, err := a.cli.Grant(ctx, int64(eventRetention/time.Second))
	if err != nil {
		return 0, err
	}
	a.evLease, a.evLeaseAt = resp.ID, time.Now()
	return a.evLease, nil
}

func (a *Agent) appendEvent(ctx context.Context, ev *pb.Event) error {
	lease, err := a.eventLease(ctx)
	if err != nil {
		return err
	}
	cli := a.cli
	for {
		cur, err := cli.Get(ctx, registry.EventKey(ev.GetService(), 1), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		rev := cur.Header.Revision + 1
		ev.Revision = rev
		key := registry.EventKey(ev.GetService(), rev)
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, registry.MustEncode(ev), clientv3.WithLease(lease))).
			Commit()
		if rpctypes.Error(err) == rpctypes.ErrLeaseNotFound {
			a.evLease = 0 // expired or revoked: grant a new one next time
		}
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
}
