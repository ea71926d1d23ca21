package elector

import (
	"context"
	"errors"
	"fmt"
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
	// Renew renews the lease once now, moving Deadline on when etcd answers.
	Renew(ctx context.Context) error
}

// Guard fences the service independently of this process. Armed for a term,
// it runs the demote hook itself once the fence point passes, unless it is
// armed again with a later one or disarmed: so the service stops by the
// fence point even if this process freezes, deadlocks or dies.
type Guard interface {
	// Arm arms the guard for epoch until fenceAt. It returns once the guard
	// has acknowledged it.
	Arm(ctx context.Context, epoch int64, fenceAt time.Time) error
	// Disarm tells the guard that the term of epoch was demoted.
	Disarm(ctx context.Context, epoch int64) error
	// Until is the latest fence point the guard acknowledged for epoch; the
	// zero time when it is not armed for it.
	Until(epoch int64) time.Time
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
	// Deadline, for a promotion, is when the hook must have finished: the
	// fence point of the lease, renewed just before the hook started.
	Deadline time.Time
}

// Hooks make the service follow its role. Both must honour ctx: it is
// cancelled when the hook's time is up.
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
	// MaxLag: a standby whose freshness lags the high-water mark by more
	// never campaigns on its own; < 0 disables.
	MaxLag int64
	// Step is the wait per rank before campaigning. Default 100ms.
	Step time.Duration
	// FenceMargin: a primary demotes itself this long before its lease
	// deadline when renewals stop. The demote hook must finish within it.
	// Default a quarter of the TTL, at least 200ms.
	FenceMargin time.Duration
	// HookTimeout bounds each demote hook run. Default 30s.
	HookTimeout time.Duration
	// PromoteTimeout bounds each promote hook run; the fence point bounds
	// it too. Default: no bound but the fence point.
	PromoteTimeout time.Duration
	Hooks          Hooks
	// Guard, when set, fences the service even if this process stops.
	Guard Guard
	Local func() Local
	// Restored is the epoch a previous run of this agent held when it
	// stopped; the service is demoted first unless that term is still ours.
	Restored int64
	// OnTerm, if set, is told the epoch of a term before its promote hook
	// starts, and 0 once its demote hook succeeded: what a restarted agent
	// must know (Restored). It must not block for long.
	OnTerm func(epoch int64)
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
	me     self
	log    *slog.Logger
	poke   chan struct{}
	acting atomic.Bool
	epoch  atomic.Int64
	// held is the lease of the current Run, readable by Acting from other
	// goroutines.
	held atomic.Pointer[Lease]

	// Owned by Run's goroutine.
	lease Lease
	w     *world
	s     state
}

// New returns an idle elector; Run campaigns.
func New(cfg Config) *Elector {
	if cfg.Step <= 0 {
		cfg.Step = 100 * time.Millisecond
	}
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = 30 * time.Second
	}
	if cfg.PromoteTimeout <= 0 {
		cfg.PromoteTimeout = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Elector{
		cfg:  cfg,
		me:   self{host: cfg.Host, priority: cfg.Priority, maxLag: cfg.MaxLag, step: cfg.Step},
		log:  cfg.Logger.With("service", cfg.Service),
		poke: make(chan struct{}, 1),
		w:    newWorld(cfg.Service),
		s:    state{restored: cfg.Restored},
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
	return l != nil && time.Now().Before(e.fencePointOf(*l, e.epoch.Load()))
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
// Run returns ErrLeaseLost). The caller runs it again under a new lease;
// what this host gave up stays given up across runs.
func (e *Elector) Run(ctx context.Context, lease Lease) error {
	e.lease = lease
	e.held.Store(&lease)
	e.w.reset()
	e.s.synced, e.s.absentSince = false, time.Time{}

	var wch clientv3.WatchChan
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if wch == nil {
			wch = e.load(wctx)
			e.s.synced = wch != nil
		}
		wake := e.decide(ctx)
		if wch == nil {
			wake = min(wake, retryWake) // retry reaching etcd
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			if e.s.acting {
				e.resign(context.Background(), "shutdown")
			}
			return nil
		case <-lease.Lost():
			if e.s.acting {
				e.demote(context.Background(), action{kind: actDemote, epoch: e.s.epoch, reason: "lease lost", event: pb.EventKind_EVENT_KIND_FENCED})
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

// decide steps and carries out what step says until it says to wait.
func (e *Elector) decide(ctx context.Context) time.Duration {
	for range 8 {
		acts, wake := e.s.step(e.me, e.input())
		if len(acts) == 0 {
			return wake
		}
		for _, a := range acts {
			wake = max(wake, e.execute(ctx, a))
		}
		if wake > 0 || ctx.Err() != nil {
			return wake
		}
	}
	return retryWake
}

func (e *Elector) input() input {
	return input{now: time.Now(), w: e.w, local: e.cfg.Local(), leaseID: e.lease.LeaseID(), fencePoint: e.fencePoint()}
}

// load reads the service's keys and starts watching from the next
// revision. It returns nil when etcd cannot be read. An acting primary
// never waits on it past its fence point.
func (e *Elector) load(ctx context.Context) clientv3.WatchChan {
	gctx, cancel := e.callContext(ctx, time.Second)
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

// fenceMargin is how long before its lease's deadline a primary demotes:
// the configured margin, or a quarter of the TTL (at least 200ms).
func fenceMargin(l Lease, configured time.Duration) time.Duration {
	if configured > 0 {
		return configured
	}
	return max(l.TTL()/4, 200*time.Millisecond)
}

// fencePoint is the instant the acting primary must stop acting.
func (e *Elector) fencePoint() time.Time { return e.fencePointOf(e.lease, e.s.epoch) }

// fencePointOf is the lease's deadline less the fence margin, and never
// later than what the guard acknowledged for epoch: this host stops acting
// no later than the guard would stop the service.
func (e *Elector) fencePointOf(l Lease, epoch int64) time.Time {
	at := l.Deadline().Add(-fenceMargin(l, e.cfg.FenceMargin))
	if e.cfg.Guard != nil {
		if g := e.cfg.Guard.Until(epoch); g.Before(at) {
			at = g
		}
	}
	return at
}

// callContext bounds an etcd call by d and, for an acting primary, by its
// fence point: the fence never waits on etcd.
func (e *Elector) callContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		ctx = context.Background() // shutting down: still hand over
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	if !e.s.acting {
		return ctx, cancel
	}
	dctx, cancel2 := context.WithDeadline(ctx, e.fencePoint())
	return dctx, func() { cancel2(); cancel() }
}

// DemoteRestored runs the demote hook for the term a previous run of this
// agent held (Config.Restored) at once. The agent calls it before Run when
// that run's lease is gone, so that the service stops before anything
// else happens under a new lease. It must not be called while Run runs.
func (e *Elector) DemoteRestored(ctx context.Context) {
	r := e.s.restored
	if r == 0 {
		return
	}
	e.s.restored = 0
	e.demote(ctx, action{kind: actDemote, epoch: r, event: pb.EventKind_EVENT_KIND_DEMOTED,
		reason: fmt.Sprintf("restarted: the lease of the term it held (epoch %d) is gone", r)})
}
