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
// elector never waits on etcd for its history. An event that cannot be
// written yet (no quorum: the very time a FENCED event is most useful) is
// kept and retried until it is, oldest first; only when more than
// eventBacklog are waiting is the oldest dropped.
func (a *Agent) writeEvents(ctx context.Context) {
	var backlog []*pb.Event
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if len(backlog) > 0 {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := a.appendEvent(wctx, backlog[0])
			cancel()
			if err == nil {
				backlog = backlog[1:]
				continue
			}
			a.log.Debug("agent: writing event failed; retrying", "err", err, "waiting", len(backlog))
			retry.Reset(500 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			a.drainEvents(backlog)
			return
		case ev := <-a.events:
			backlog = append(backlog, ev)
			if len(backlog) > eventBacklog {
				a.log.Warn("agent: too many role-change events waiting for etcd; dropping the oldest", "kind", backlog[0].GetKind())
				backlog = backlog[1:]
			}
		case <-retry.C:
		}
	}
}

// eventBacklog bounds the events kept while etcd cannot be written.
const eventBacklog = 256

// drainEvents writes what is waiting at shutdown, briefly.
func (a *Agent) drainEvents(backlog []*pb.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for {
		select {
		case ev := <-a.events:
			backlog = append(backlog, ev)
			continue
		default:
		}
		break
	}
	for _, ev := range backlog {
		if err := a.appendEvent(ctx, ev); err != nil {
			a.log.Warn("agent: dropped a role-change event at shutdown", "service", ev.GetService(), "kind", ev.GetKind(), "reason", ev.GetReason())
			return
		}
	}
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
