package agent

import (
	"context"
	"time"

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
// under a lease of eventRetention.
func (a *Agent) writeEvent(ctx context.Context, ev *pb.Event) {
	for try := 0; try < 5 && ctx.Err() == nil; try++ {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := appendEvent(wctx, a.cli, ev)
		cancel()
		if err == nil {
			return
		}
		a.log.Debug("agent: writing event failed; retrying", "err", err)
		sleepCtx(ctx, 500*time.Millisecond)
	}
	a.log.Warn("agent: dropped a role-change event", "service", ev.GetService(), "kind", ev.GetKind(), "reason", ev.GetReason())
}

func appendEvent(ctx context.Context, cli *clientv3.Client, ev *pb.Event) error {
	lease, err := cli.Grant(ctx, int64(eventRetention/time.Second))
	if err != nil {
		return err
	}
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
			Then(clientv3.OpPut(key, registry.MustEncode(ev), clientv3.WithLease(lease.ID))).
			Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
}
