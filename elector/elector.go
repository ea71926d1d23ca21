package elector

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// ErrLeaseLost is returned by Run when the lease it campaigned under is gone.
var ErrLeaseLost = errors.New("lease lost")

// Lease is the agent's etcd lease as the elector needs it.
type Lease interface {
	LeaseID() clientv3.LeaseID
	// Deadline is the latest instant the lease is known to be alive: the
	// send time of the last answered keepalive plus the TTL.
	Deadline() time.Time
	// Lost is closed once the lease is known or presumed gone.
	Lost() <-chan struct{}
	// TTL of the lease.
	TTL() time.Duration
}

// Transition describes a role change to the hooks.
type Transition struct {
	Service string
	Host    string
	// Role is "primary" for a promotion, "standby" for a demotion.
	Role            string
	Epoch           int64
	PreviousPrimary string
	Reason          string
}

// Hooks make the service follow its role. Both must honour ctx: it is
// cancelled when the lease deadline leaves no more time.
type Hooks interface {
	Promote(ctx context.Context, t Transition) error
	Demote(ctx context.Context, t Transition) error
}

// Local is this host's own view of its instance, fresher than etcd's copy.
type Local struct {
	Healthy bool
	// Checked: the checks have decided a state. Until then an acting
	// primary (one that resumed its role after a restart) keeps it.
	Checked    bool
	Freshness  int64
	NoFailover bool
}

// Config configures an elector.
type Config struct {
	Client              *clientv3.Client
	Service, Host, Zone string
	Address             string
	Priority            int32
	// MaxLag: a standby whose freshness lags by more never campaigns; < 0 disables.
	MaxLag int64
	// Step is the wait per rank before campaigning. Default 100ms.
	Step time.Duration
	// FenceMargin: a primary demotes itself this long before its lease
	// deadline when renewals stop. The demote hook must finish within it.
	// Default a quarter of the TTL, at least 200ms.
	FenceMargin time.Duration
	// HookTimeout bounds each hook run. Default 10s.
	HookTimeout time.Duration
	Hooks       Hooks
	Local       func() Local
	// Event, if set, is told of role changes; it must not block.
	Event func(ev *pb.Event)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// switchoverMaxAge: a switchover request older than this is stale.
const switchoverMaxAge = 30 * time.Second

// Elector holds or campaigns for the primary role of one service on one host.
type Elector struct {
	cfg    Config
	log    *slog.Logger
	poke   chan struct{}
	acting atomic.Bool
	epoch  atomic.Int64
	// held is the lease of the current Run, readable by Acting from other
	// goroutines.
	held atomic.Pointer[Lease]

	// Owned by Run's goroutine.
	lease       Lease
	w           *world
	absentSince time.Time // when the leader key was first seen absent
	cooldown    time.Time // no campaigning before this (after a failed promote)
	// fenced is an epoch this host gave up (resigned, fenced, failed to
	// promote) whose keys the world may still show as ours: they are
	// deleted, and never acted on, until the watch confirms they are gone.
	fenced int64
	synced bool // the world reflects etcd: read once and watched since
}

// New returns an idle elector; Run campaigns.
func New(cfg Config) *Elector {
	if cfg.Step <= 0 {
		cfg.Step = 100 * time.Millisecond
	}
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Elector{
		cfg:  cfg,
		log:  cfg.Logger.With("service", cfg.Service),
		poke: make(chan struct{}, 1),
		w:    newWorld(cfg.Service),
	}
}

// Acting reports whether this host is the acting primary: promoted, primary
// record written, not demoted since, and still before its fence point. The
// fence point is checked here and not only by Run's loop: a process frozen
// past its lease (SIGSTOP, a paused VM or container) must say no the moment
// it runs again, before the loop has had a chance to demote.
func (e *Elector) Acting() bool {
	if !e.acting.Load() {
		return false
	}
	l := e.held.Load()
	return l != nil && time.Now().Before(fencePoint(*l, e.cfg.FenceMargin))
}

// Epoch is the epoch of the current or last term this host held.
func (e *Elector) Epoch() int64 { return e.epoch.Load() }

// Poke tells the elector that local state (health, freshness) changed.
func (e *Elector) Poke() {
	select {
	case e.poke <- struct{}{}:
	default:
	}
}

// Run campaigns and holds the role under lease until ctx is done (a
// graceful stop: an acting primary runs its demote hook and resigns, then
// Run returns nil) or the lease is lost (an acting primary demotes locally;
// Run returns ErrLeaseLost). The caller runs it again under a new lease.
func (e *Elector) Run(ctx context.Context, lease Lease) error {
	e.lease = lease
	e.held.Store(&lease)
	e.w.reset()
	e.absentSince, e.fenced, e.synced = time.Time{}, 0, false

	var wch clientv3.WatchChan
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if wch == nil {
			wch = e.load(wctx)
			e.synced = wch != nil
		}
		wake := e.step(ctx)
		if wch == nil {
			wake = min(wake, 250*time.Millisecond) // retry reaching etcd
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			if e.acting.Load() {
				e.resign(context.Background(), "shutdown")
			}
			return nil
		case <-lease.Lost():
			if e.acting.Load() {
				e.demote(context.Background(), "lease lost", pb.EventKind_EVENT_KIND_FENCED)
			}
			return ErrLeaseLost
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil || resp.Canceled {
				wch = nil
				continue
			}
			for _, ev := range resp.Events {
				e.w.apply(string(ev.Kv.Key), ev.Kv, ev.Type == clientv3.EventTypeDelete)
			}
			e.w.rev = max(e.w.rev, resp.Header.Revision)
		case <-e.poke:
		case <-timer.C:
		}
	}
}

// load reads the service's keys and starts watching from the next
// revision. It returns nil when etcd cannot be read.
func (e *Elector) load(ctx context.Context) clientv3.WatchChan {
	gctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := e.cfg.Client.Get(gctx, registry.Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil
	}
	gone := e.w.gone
	e.w.reset()
	e.w.gone = gone
	for _, kv := range resp.Kvs {
		e.w.apply(string(kv.Key), kv, false)
	}
	e.w.rev = resp.Header.Revision
	return e.cfg.Client.Watch(clientv3.WithRequireLeader(ctx), registry.Prefix,
		clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithProgressNotify())
}

func (e *Elector) fenceMargin() time.Duration { return fenceMargin(e.lease, e.cfg.FenceMargin) }

// fenceMargin is how long before its lease's deadline a primary demotes:
// the configured margin, or a quarter of the TTL (at least 200ms).
func fenceMargin(l Lease, configured time.Duration) time.Duration {
	if configured > 0 {
		return configured
	}
	return max(l.TTL()/4, 200*time.Millisecond)
}

// fencePoint is the instant an acting primary under l must stop acting.
func fencePoint(l Lease, configured time.Duration) time.Time {
	return l.Deadline().Add(-fenceMargin(l, configured))
}

// step looks at the world and acts. It returns how long until it should
// look again even if nothing happens.
func (e *Elector) step(ctx context.Context) time.Duration {
	const idle = time.Second
	now := time.Now()
	w := e.w
	if e.acting.Load() {
		return e.stepPrimary(ctx, now)
	}
	if !e.synced {
		return 250 * time.Millisecond // decide nothing on a world etcd has not confirmed
	}
	leaderMine := w.leader != nil && w.leader.GetHost() == e.cfg.Host && w.leaderLease == e.lease.LeaseID()
	if e.fenced != 0 {
		if leaderMine && w.leaderEpoch == e.fenced {
			_ = e.deleteKeys(ctx, e.fenced) // guarded: a no-op once gone
			return 250 * time.Millisecond
		}
		e.fenced = 0
	}
	if leaderMine {
		// Ours but not acting: this agent restarted within the TTL and
		// resumed its lease, or stopped between winning and promoting.
		if p := w.primary; p != nil && p.GetHost() == e.cfg.Host && p.GetEpoch() == w.leaderEpoch {
			e.epoch.Store(w.leaderEpoch)
			e.acting.Store(true)
			e.log.Info("elector: resumed the primary role held under this lease", "epoch", w.leaderEpoch)
			return 0
		}
		e.promote(ctx, w.leaderEpoch, "", "resumed leadership")
		return 0
	}
	if w.leader != nil {
		e.absentSince = time.Time{}
		return idle
	}
	if w.control.GetPaused() {
		return idle
	}
	if now.Before(e.cooldown) {
		return e.cooldown.Sub(now)
	}
	var target string
	var excluded []string
	if from, to, ok := w.switchover(now, switchoverMaxAge); ok {
		target, excluded = to, []string{from}
	}
	local := e.cfg.Local()
	r := Rank(e.cfg.Host, w.candidates(e.cfg.Host, local, e.cfg.Priority), w.reference, e.cfg.MaxLag, target, excluded)
	if !r.Eligible {
		e.log.Debug("elector: not campaigning", "why", r.Why)
		return idle
	}
	if e.absentSince.IsZero() {
		e.absentSince = now
	}
	e.log.Debug("elector: leader key absent", "rank", r.Rank)
	if tryAt := e.absentSince.Add(time.Duration(r.Rank) * e.cfg.Step); now.Before(tryAt) {
		return tryAt.Sub(now)
	}
	e.campaign(ctx, target != "")
	return 0
}

// stepPrimary keeps or gives up the role of an acting primary.
func (e *Elector) stepPrimary(ctx context.Context, now time.Time) time.Duration {
	w := e.w
	fenceAt := fencePoint(e.lease, e.cfg.FenceMargin)
	if !now.Before(fenceAt) {
		e.fence()
		return 0
	}
	wake := min(fenceAt.Sub(now), time.Second)
	epoch := e.epoch.Load()
	// Only a world in step with etcd can say the role is gone; while etcd is
	// unreachable, self-fencing above is what stops this primary.
	// The world must also have caught up with the key this host created.
	if e.synced && w.rev >= epoch && (w.leader == nil || w.leaderEpoch != epoch) {
		e.demote(ctx, "leadership lost", pb.EventKind_EVENT_KIND_DEMOTED)
		return 0
	}
	if w.control.GetPaused() {
		return wake
	}
	if l := e.cfg.Local(); !l.Healthy && l.Checked {
		e.resign(ctx, "check failed")
		return 0
	}
	if from, to, ok := w.switchover(now, switchoverMaxAge); ok && from == e.cfg.Host && to != e.cfg.Host {
		e.resign(ctx, "switchover")
		return 0
	}
	return wake
}
