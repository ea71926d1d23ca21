package elector

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// writeTimeout bounds each etcd write of the elector.
const writeTimeout = 2 * time.Second

// campaign tries to create the leader key under the lease. Only one
// candidate can: the create revision must still be zero.
func (e *Elector) campaign(ctx context.Context, switchover bool) {
	key := registry.LeaderKey(e.cfg.Service)
	val := registry.MustEncode(&pb.Leader{Host: e.cfg.Host, Address: e.cfg.Address, Zone: e.cfg.Zone})
	cctx, cancel := context.WithTimeout(ctx, writeTimeout)
	resp, err := e.cfg.Client.Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(e.lease.LeaseID()))).
		Commit()
	cancel()
	if err != nil {
		e.log.Warn("elector: campaign failed", "err", err)
		return
	}
	if !resp.Succeeded {
		return // someone else won; the watch will show who
	}
	epoch := resp.Header.Revision // the leader key's create revision
	reason, prev := e.takeoverReason(switchover)
	e.log.Info("elector: won the leader key", "epoch", epoch, "reason", reason)
	e.promote(ctx, epoch, prev, reason)
}

// takeoverReason explains why the role was free, from how the last leader went.
func (e *Elector) takeoverReason(switchover bool) (reason, previous string) {
	g := e.w.gone
	switch {
	case switchover:
		return "switchover from " + g.host, g.host
	case g.host == "":
		return "no primary", ""
	case g.leaseExpired:
		return "lease of " + g.host + " expired", g.host
	default:
		return g.host + " resigned", g.host
	}
}

// promote runs the promote hook for epoch and, if it succeeds, writes the
// primary record in a transaction guarded by the leader key still having
// that create revision. Only then does this host act as primary.
func (e *Elector) promote(ctx context.Context, epoch int64, previous, reason string) {
	t := Transition{Service: e.cfg.Service, Host: e.cfg.Host, Role: "primary", Epoch: epoch, PreviousPrimary: previous, Reason: reason}
	// A promotion must end a fence margin before the lease deadline, so that
	// a demotion still fits before another host could be elected.
	hctx, cancel := e.hookContext(ctx, e.fenceMargin())
	err := e.cfg.Hooks.Promote(hctx, t)
	cancel()
	if err != nil {
		e.log.Warn("elector: promote hook failed; resigning and staying standby", "epoch", epoch, "err", err)
		e.event(pb.EventKind_EVENT_KIND_PROMOTE_FAILED, epoch, err.Error())
		dctx, cancel := e.hookContext(ctx, noDeadline)
		t.Role, t.Reason = "standby", "promote failed"
		_ = e.cfg.Hooks.Demote(dctx, t)
		cancel()
		e.cooldown = time.Now().Add(max(5*time.Second, e.lease.TTL()))
		e.giveUp(ctx, epoch)
		return
	}
	lkey, pkey := registry.LeaderKey(e.cfg.Service), registry.PrimaryKey(e.cfg.Service)
	ops := []clientv3.Op{clientv3.OpPut(pkey, registry.MustEncode(&pb.Primary{
		Host: e.cfg.Host, Address: e.cfg.Address, Epoch: epoch, Zone: e.cfg.Zone,
	}), clientv3.WithLease(e.lease.LeaseID()))}
	if c := e.w.control; c.GetSwitchoverFrom() != "" {
		// The switchover is done: clear the request, keep the pause flag.
		ops = append(ops, clientv3.OpPut(registry.ControlKey(e.cfg.Service), registry.MustEncode(&pb.Control{Paused: c.GetPaused()})))
	}
	// The record must be written while a demotion still fits before the
	// lease deadline: past deadline − margin this host may no longer act.
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	wctx, cancel2 := context.WithDeadline(wctx, e.lease.Deadline().Add(-e.fenceMargin()))
	resp, err := e.cfg.Client.Txn(wctx).
		If(clientv3.Compare(clientv3.CreateRevision(lkey), "=", epoch)).
		Then(ops...).Commit()
	cancel2()
	cancel()
	if err != nil || !resp.Succeeded {
		e.log.Warn("elector: could not record the promotion; demoting", "epoch", epoch, "err", err)
		e.fenced = epoch
		dctx, cancel := e.hookContext(ctx, noDeadline)
		t.Role, t.Reason = "standby", "promotion not recorded"
		_ = e.cfg.Hooks.Demote(dctx, t)
		cancel()
		return
	}
	e.epoch.Store(epoch)
	e.acting.Store(true)
	e.log.Info("elector: acting as primary", "epoch", epoch, "reason", reason)
	e.event(pb.EventKind_EVENT_KIND_PROMOTED, epoch, reason)
}

// resign gives the role up cleanly: stop acting, run the demote hook, then
// delete the keys so the best standby takes over at once. The hook finishes
// before the keys go, so no other promote hook can start before it ends.
func (e *Elector) resign(ctx context.Context, reason string) {
	epoch := e.epoch.Load()
	e.demote(ctx, reason, pb.EventKind_EVENT_KIND_DEMOTED)
	e.giveUp(ctx, epoch)
}

// giveUp deletes the keys of epoch at once so a standby can take over, and
// remembers the epoch so that this host never acts on it again.
func (e *Elector) giveUp(ctx context.Context, epoch int64) {
	e.fenced = epoch
	if err := e.deleteKeys(ctx, epoch); err != nil {
		e.log.Warn("elector: could not delete the leader key yet; retrying until it is gone or expires", "err", err)
	}
}

// demote stops acting and runs the demote hook; the keys are left alone.
func (e *Elector) demote(ctx context.Context, reason string, kind pb.EventKind) {
	epoch := e.epoch.Load()
	e.acting.Store(false)
	e.log.Info("elector: demoting", "epoch", epoch, "reason", reason)
	// A demotion is never cut short by the lease deadline: a late demote
	// is still better than a service left half-demoted. The fence margin is
	// what gives it time to finish first.
	hctx, cancel := e.hookContext(ctx, noDeadline)
	err := e.cfg.Hooks.Demote(hctx, Transition{Service: e.cfg.Service, Host: e.cfg.Host, Role: "standby", Epoch: epoch, Reason: reason})
	cancel()
	if err != nil {
		e.log.Warn("elector: demote hook failed", "epoch", epoch, "err", err)
		reason = fmt.Sprintf("%s (demote hook failed: %v)", reason, err)
	}
	e.event(kind, epoch, reason)
}

// fence demotes locally because the lease may expire soon and etcd has not
// answered: no new primary can be elected before the lease deadline, and
// this host stops acting, hook included, before it.
func (e *Elector) fence() {
	e.log.Warn("elector: no lease renewal; demoting before the lease can expire", "deadline", e.lease.Deadline())
	e.fenced = e.epoch.Load()
	e.demote(context.Background(), "lease renewals stopped", pb.EventKind_EVENT_KIND_FENCED)
}

// deleteKeys removes the leader and primary keys of epoch, if still ours.
func (e *Elector) deleteKeys(ctx context.Context, epoch int64) error {
	if ctx.Err() != nil {
		ctx = context.Background() // shutting down: still hand over
	}
	lkey := registry.LeaderKey(e.cfg.Service)
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err := e.cfg.Client.Txn(wctx).
		If(clientv3.Compare(clientv3.CreateRevision(lkey), "=", epoch)).
		Then(clientv3.OpDelete(lkey), clientv3.OpDelete(registry.PrimaryKey(e.cfg.Service))).
		Commit()
	return err
}

// hookContext bounds a hook by the hook timeout and by the lease deadline
// less slack: past the deadline another host may be promoted, so a
// promotion must not still be under way.
// noDeadline, as hookContext's slack, bounds a hook by the hook timeout only.
const noDeadline = time.Duration(-1)

func (e *Elector) hookContext(ctx context.Context, slack time.Duration) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		ctx = context.Background() // a graceful stop still runs its hooks
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HookTimeout)
	if slack == noDeadline {
		return ctx, cancel
	}
	dctx, cancel2 := context.WithDeadline(ctx, e.lease.Deadline().Add(-slack))
	return dctx, func() { cancel2(); cancel() }
}

func (e *Elector) event(kind pb.EventKind, epoch int64, reason string) {
	if e.cfg.Event == nil {
		return
	}
	e.cfg.Event(&pb.Event{
		Service: e.cfg.Service, Kind: kind, Host: e.cfg.Host, Epoch: epoch, Reason: reason, At: timestamppb.Now(),
	})
}
