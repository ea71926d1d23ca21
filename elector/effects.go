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

// This file carries out the actions step decides: etcd transactions, hooks
// and the guard. Each records its outcome in the state.

// writeTimeout bounds each etcd write of the elector.
const writeTimeout = 2 * time.Second

// guardTimeout bounds each call to the guard: it is on this host.
const guardTimeout = time.Second

// renewTimeout bounds the lease renewal before a promotion; a failed one
// only leaves the promote window shorter.
const renewTimeout = time.Second

// execute carries out a and returns how long to wait before deciding
// again (0: at once).
func (e *Elector) execute(ctx context.Context, a action) time.Duration {
	switch a.kind {
	case actCampaign:
		if !e.campaign(ctx, a) {
			return retryWake // lost the race or etcd failed: the watch tells more
		}
	case actPromote:
		e.promote(ctx, a.epoch, a.previous, a.reason, false)
	case actResume:
		e.resume(ctx, a.epoch)
	case actDemote:
		e.demote(ctx, a)
	case actDeleteKeys:
		if err := e.deleteKeys(ctx, a.epoch); err != nil {
			e.log.Warn("elector: could not delete the keys of a given-up term yet; retrying until they are gone or expire", "epoch", a.epoch, "err", err)
		}
	case actWriteMark:
		e.writeMark(ctx, a)
	case actEvent:
		e.log.Warn("elector: "+a.reason, "epoch", a.epoch)
		e.event(a.event, a.epoch, a.reason)
	}
	return 0
}

// campaign tries to create the leader key under the lease, and promotes if
// it won. Only one candidate can win: the create revision must still be 0.
func (e *Elector) campaign(ctx context.Context, a action) bool {
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
		return false
	}
	if !resp.Succeeded {
		return false // someone else won; the watch will show who
	}
	epoch := resp.Header.Revision // the leader key's create revision
	reason, prev := e.takeoverReason(a.switchover, a.force)
	e.log.Info("elector: won the leader key", "epoch", epoch, "reason", reason)
	e.promote(ctx, epoch, prev, reason, a.force)
	return true
}

// takeoverReason explains why the role was free, from how the last leader went.
func (e *Elector) takeoverReason(switchover, force bool) (reason, previous string) {
	g := e.w.gone
	switch {
	case force:
		return "forced by an operator past the high-water mark", g.host
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

// leaseFencePoint is the fence point of the lease alone.
func (e *Elector) leaseFencePoint() time.Time {
	return e.lease.Deadline().Add(-fenceMargin(e.lease, e.cfg.FenceMargin))
}

// promote makes this host the primary of epoch: renew the lease (so the
// promote hook gets a whole TTL less the fence margin), arm the guard (from
// the hook's first instant the service may take writes, so something that
// does not need this process must be ready to demote it), run the promote
// hook, and write the primary record in a transaction guarded by the leader
// key still having that create revision. Only then does this host act.
func (e *Elector) promote(ctx context.Context, epoch int64, previous, reason string, force bool) {
	if epoch <= e.s.givenUp {
		return // never act on a term already given up
	}
	rctx, cancel := context.WithTimeout(ctx, renewTimeout)
	if err := e.lease.Renew(rctx); err != nil {
		e.log.Warn("elector: could not renew the lease before promoting; the promote window is shorter", "err", err)
	}
	cancel()
	fenceAt := e.leaseFencePoint()
	t := Transition{Service: e.cfg.Service, Host: e.cfg.Host, Role: "primary", Epoch: epoch, PreviousPrimary: previous, Reason: reason, Deadline: fenceAt}
	e.s.epoch = epoch
	if err := e.arm(ctx, epoch, fenceAt); err != nil {
		e.log.Error("elector: the guard did not arm; not promoting", "epoch", epoch, "err", err)
		e.event(pb.EventKind_EVENT_KIND_PROMOTE_FAILED, epoch, "the guard did not arm: "+err.Error())
		e.s.givenUp = max(e.s.givenUp, epoch) // no hook ran: nothing to demote
		e.s.cooldown = time.Now().Add(max(5*time.Second, e.lease.TTL()))
		return
	}
	if e.cfg.OnTerm != nil {
		e.cfg.OnTerm(epoch)
	}
	hctx, cancel := e.hookContext(ctx, e.cfg.PromoteTimeout, fenceAt)
	err := e.cfg.Hooks.Promote(hctx, t)
	cancel()
	if err != nil {
		e.log.Warn("elector: promote hook failed; demoting and staying standby", "epoch", epoch, "err", err)
		e.event(pb.EventKind_EVENT_KIND_PROMOTE_FAILED, epoch, err.Error())
		e.s.cooldown = time.Now().Add(max(5*time.Second, e.lease.TTL()))
		e.demote(ctx, action{kind: actDemote, epoch: epoch, reason: "promote failed"})
		return
	}
	if err := e.record(ctx, epoch, fenceAt); err != nil {
		e.log.Warn("elector: could not record the promotion; demoting", "epoch", epoch, "err", err)
		e.demote(ctx, action{kind: actDemote, epoch: epoch, reason: "promotion not recorded"})
		return
	}
	e.s.acting, e.s.keptRole, e.s.markWritten = true, false, 0
	e.epoch.Store(epoch)
	e.acting.Store(true)
	e.log.Info("elector: acting as primary", "epoch", epoch, "reason", reason)
	kind := pb.EventKind_EVENT_KIND_PROMOTED
	if force {
		kind = pb.EventKind_EVENT_KIND_FORCED
	}
	e.event(kind, epoch, reason)
}

// record writes the primary record of epoch, and clears a switchover
// request that this promotion fulfils, unless an operator changed the
// request meanwhile (their pause must not be undone by our copy).
func (e *Elector) record(ctx context.Context, epoch int64, fenceAt time.Time) error {
	lkey, pkey, ckey := registry.LeaderKey(e.cfg.Service), registry.PrimaryKey(e.cfg.Service), registry.ControlKey(e.cfg.Service)
	ops := []clientv3.Op{clientv3.OpPut(pkey, registry.MustEncode(&pb.Primary{
		Host: e.cfg.Host, Address: e.cfg.Address, Epoch: epoch, Zone: e.cfg.Zone,
	}), clientv3.WithLease(e.lease.LeaseID()))}
	if c := e.w.control; c.GetSwitchoverTo() != "" || c.GetSwitchoverFrom() != "" {
		clear := clientv3.OpPut(ckey, registry.MustEncode(&pb.Control{Paused: c.GetPaused()}))
		ops = append(ops, clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(ckey), "=", e.w.controlRev)},
			[]clientv3.Op{clear}, nil))
	}
	// Past the fence point this host may no longer act, so the record must
	// be written before it.
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	wctx, cancel2 := context.WithDeadline(wctx, fenceAt)
	defer cancel2()
	resp, err := e.cfg.Client.Txn(wctx).
		If(clientv3.Compare(clientv3.CreateRevision(lkey), "=", epoch)).
		Then(ops...).Commit()
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("the leader key of epoch %d is gone", epoch)
	}
	return err
}

// resume acts again on a term whose primary record is ours (an agent
// restarted within the TTL, its service still primary), once the guard is
// armed for it.
func (e *Elector) resume(ctx context.Context, epoch int64) {
	e.s.epoch = epoch
	if err := e.arm(ctx, epoch, e.leaseFencePoint()); err != nil {
		e.log.Error("elector: the guard did not arm; giving the role up", "epoch", epoch, "err", err)
		e.demote(ctx, action{kind: actDemote, epoch: epoch, reason: "the guard did not arm", event: pb.EventKind_EVENT_KIND_DEMOTED})
		return
	}
	if e.cfg.OnTerm != nil {
		e.cfg.OnTerm(epoch)
	}
	e.s.acting, e.s.keptRole, e.s.markWritten = true, false, 0
	e.epoch.Store(epoch)
	e.acting.Store(true)
	e.log.Info("elector: resumed the primary role held under this lease", "epoch", epoch)
}

// arm arms the guard, if there is one.
func (e *Elector) arm(ctx context.Context, epoch int64, fenceAt time.Time) error {
	if e.cfg.Guard == nil {
		return nil
	}
	gctx, cancel := context.WithTimeout(ctx, guardTimeout)
	defer cancel()
	return e.cfg.Guard.Arm(gctx, epoch, fenceAt)
}

// resign gives the role up cleanly: demote hook first, then delete the keys
// so the best standby takes over at once. The hook finishes before the keys
// go, so no other promote hook can start before it ends; if it fails, the
// keys stay until a retry succeeds.
func (e *Elector) resign(ctx context.Context, reason string) {
	epoch := e.s.epoch
	if e.demote(ctx, action{kind: actDemote, epoch: epoch, reason: reason, event: pb.EventKind_EVENT_KIND_DEMOTED}) {
		if err := e.deleteKeys(ctx, epoch); err != nil {
			e.log.Warn("elector: could not delete the leader key; it expires with the lease", "err", err)
		}
	}
}

// demote stops acting and runs the demote hook. On success the term is
// given up for good and the guard disarmed; on failure the hook is retried
// and nothing else happens meanwhile (the guard stays armed). A demotion is
// never cut short by the lease deadline: a late demote is still better than
// a service left half-demoted; the fence margin gives it time first.
func (e *Elector) demote(ctx context.Context, a action) bool {
	e.s.acting = false
	e.acting.Store(false)
	first := e.s.demoteDue == ""
	e.log.Info("elector: demoting", "epoch", a.epoch, "reason", a.reason)
	hctx, cancel := e.hookContext(ctx, e.cfg.HookTimeout, time.Time{})
	err := e.cfg.Hooks.Demote(hctx, Transition{Service: e.cfg.Service, Host: e.cfg.Host, Role: "standby", Epoch: a.epoch, Reason: a.reason})
	cancel()
	if err != nil {
		e.log.Warn("elector: demote hook failed; retrying", "epoch", a.epoch, "err", err)
		e.s.demoteDue, e.s.demoteEvent, e.s.retryAt = a.reason, a.event, time.Now().Add(time.Second)
		if first && a.event != 0 {
			e.event(a.event, a.epoch, fmt.Sprintf("%s (demote hook failed: %v; retrying)", a.reason, err))
		}
		return false
	}
	e.s.demoteDue = ""
	e.s.givenUp = max(e.s.givenUp, a.epoch)
	if e.cfg.Guard != nil {
		gctx, cancel := context.WithTimeout(context.Background(), guardTimeout)
		if err := e.cfg.Guard.Disarm(gctx, a.epoch); err != nil {
			e.log.Warn("elector: could not disarm the guard; it will run the demote hook once more", "epoch", a.epoch, "err", err)
		}
		cancel()
	}
	if e.cfg.OnTerm != nil {
		e.cfg.OnTerm(0)
	}
	if first && a.event != 0 {
		e.event(a.event, a.epoch, a.reason)
	}
	return true
}

// deleteKeys removes the leader and primary keys of epoch, if still ours.
func (e *Elector) deleteKeys(ctx context.Context, epoch int64) error {
	lkey := registry.LeaderKey(e.cfg.Service)
	wctx, cancel := e.callContext(ctx, writeTimeout)
	defer cancel()
	_, err := e.cfg.Client.Txn(wctx).
		If(clientv3.Compare(clientv3.CreateRevision(lkey), "=", epoch)).
		Then(clientv3.OpDelete(lkey), clientv3.OpDelete(registry.PrimaryKey(e.cfg.Service))).
		Commit()
	return err
}

// writeMark records the acting primary's freshness as the durable
// high-water mark, while its leader key is still of this term.
func (e *Elector) writeMark(ctx context.Context, a action) {
	wctx, cancel := e.callContext(ctx, writeTimeout)
	defer cancel()
	m := registry.MustEncode(&pb.Mark{Host: e.cfg.Host, Epoch: a.epoch, Freshness: a.freshness, At: timestamppb.Now()})
	resp, err := e.cfg.Client.Txn(wctx).
		If(clientv3.Compare(clientv3.CreateRevision(registry.LeaderKey(e.cfg.Service)), "=", a.epoch)).
		Then(clientv3.OpPut(registry.MarkKey(e.cfg.Service), m)).
		Commit()
	if err != nil || !resp.Succeeded {
		e.log.Debug("elector: high-water mark not written", "err", err)
		return
	}
	e.s.markWritten = a.freshness
}

// hookContext bounds a hook by timeout and, when deadline is set, by it:
// past the fence point a promotion must not still be under way.
func (e *Elector) hookContext(ctx context.Context, timeout time.Duration, deadline time.Time) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		ctx = context.Background() // a graceful stop still runs its hooks
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	if deadline.IsZero() {
		return ctx, cancel
	}
	dctx, cancel2 := context.WithDeadline(ctx, deadline)
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
