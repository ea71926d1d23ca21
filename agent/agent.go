package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/understudy-dev/understudy/elector"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// Version is reported in the host record.
var Version = "dev"

// Options are the parts of an agent that are not in its config file.
type Options struct {
	Logger *slog.Logger
	// WriteTimeout bounds each etcd write. Default 2s.
	WriteTimeout time.Duration
	// GuardCommand starts the guard process when none answers on the
	// guard socket: argv to which the socket and watchdog flags are added,
	// e.g. [/usr/bin/understudy guard]. Empty: the guard runs inside this
	// process on a private socket, so it fences only while this process
	// runs (tests and understudy dev).
	GuardCommand []string
}

// Agent registers one host and its service instances and keeps their
// health current. Create with New, run with Run.
type Agent struct {
	cfg       Config
	opts      Options
	log       *slog.Logger
	cli       *clientv3.Client
	prober    *prober
	lease     atomic.Pointer[Lease] // of the current serve, for tests
	instances []*instance
	changed   chan struct{} // capacity 1: some instance's health changed
	events    chan *pb.Event
	evLease   clientv3.LeaseID // current lease for events (writeEvents only)
	evLeaseAt time.Time
	httpLn    net.Listener // role endpoints; nil when off
	startedAt time.Time
	fence     *fence // the guard of primary-mode services; nil when there are none

	stMu sync.Mutex
	st   agentState // what the state file holds
}

// instance is the live state of one configured service on this host.
type instance struct {
	cfg       ServiceConfig
	address   string // expanded
	checker   Checker
	freshness Checker          // nil when not configured
	elector   *elector.Elector // primary mode only

	mu        sync.Mutex
	smoother  Smoother
	passing   bool
	output    string
	changedAt time.Time
	fresh     int64 // last freshness reported
}

func (in *instance) healthy() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.passing
}

func (in *instance) local() elector.Local {
	in.mu.Lock()
	defer in.mu.Unlock()
	return elector.Local{Healthy: in.passing, Checked: in.smoother.Known(), Freshness: in.fresh, NoFailover: slices.Contains(in.cfg.Tags, registry.NoFailoverTag)}
}

func (in *instance) mode() pb.Mode {
	if in.cfg.Mode == ModePrimary {
		return pb.Mode_MODE_PRIMARY
	}
	return pb.Mode_MODE_POOL
}

func (in *instance) record(host, zone string) *pb.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	h := pb.Health_HEALTH_CRITICAL
	if in.passing {
		h = pb.Health_HEALTH_PASSING
	}
	return &pb.Instance{
		Host: host, Service: in.cfg.Name, Zone: zone, Address: in.address,
		Mode: in.mode(), Health: h, CheckOutput: in.output,
		HealthChangedAt: timestamppb.New(in.changedAt),
		Tags:            in.cfg.Tags, Priority: in.cfg.Priority, Freshness: in.fresh,
	}
}

// New prepares an agent: it expands addresses, builds the checks and an
// etcd client. Nothing is registered until Run.
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 2 * time.Second
	}
	a := &Agent{
		cfg:     *cfg,
		opts:    opts,
		log:     opts.Logger.With("host", cfg.Host),
		changed: make(chan struct{}, 1),
		events:  make(chan *pb.Event, 64),
	}
	for i, s := range cfg.Services {
		addr, err := registry.ExpandAddress(s.Address)
		if err != nil {
			return nil, fmt.Errorf("services[%d].address: %w", i, err)
		}
		in := &instance{cfg: s, address: addr, checker: NewChecker(s.Check, addr)}
		in.smoother = Smoother{Rise: *s.Check.Rise, Fall: *s.Check.Fall}
		if len(s.Freshness) > 0 {
			in.freshness = execCheck{argv: s.Freshness}
		}
		a.instances = append(a.instances, in)
	}
	conns := newConnTracker()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.EtcdEndpoints,
		DialTimeout: 5 * time.Second,
		// Close a silently dead connection eventually. gRPC raises the ping
		// interval to at least 10 s, so this is a backstop: the prober
		// (endpoints.go) is what moves off an unresponsive member quickly.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		DialOptions: []grpc.DialOption{
			grpc.WithKeepaliveParams(keepalive.ClientParameters{
				Time: time.Second, Timeout: time.Second, PermitWithoutStream: true,
			}),
			// The prober closes connections through this dialer.
			grpc.WithContextDialer(conns.dial),
			// Reconnect to a member that was down within seconds of its
			// return, not after gRPC's default backoff of up to two minutes.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: 5 * time.Second,
			}),
		},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	a.cli = cli
	a.st = loadState(cfg.StateFile)
	a.prober = newProber(cli, cfg.EtcdEndpoints, registry.HostKey(cfg.Host), conns, a.log)
	for _, in := range a.instances {
		if in.cfg.Mode != ModePrimary {
			continue
		}
		if a.fence == nil {
			if a.fence, err = a.newFence(); err != nil {
				_ = cli.Close()
				return nil, err
			}
		}
		in.elector = a.newElector(in)
	}
	if cfg.HTTPAddr != "off" {
		if a.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			_ = cli.Close()
			return nil, fmt.Errorf("http_addr: %w", err)
		}
	}
	return a, nil
}

// newFence prepares the guard of this host's primary-mode services.
func (a *Agent) newFence() (*fence, error) {
	socket, spawn := a.cfg.Guard.Socket, []string(nil)
	if len(a.opts.GuardCommand) > 0 {
		spawn = append(slices.Clone(a.opts.GuardCommand), "--socket", socket)
		if a.cfg.Guard.Watchdog != "" {
			spawn = append(spawn, "--watchdog", a.cfg.Guard.Watchdog, "--watchdog-timeout", a.cfg.Guard.WatchdogTimeout.String())
		}
	} else {
		var err error
		if socket, err = inProcessGuardSocket(); err != nil {
			return nil, fmt.Errorf("guard: %w", err)
		}
	}
	// The same margin as the electors' (elector.Config.FenceMargin): the
	// guard's fence point and the electors' must be one instant.
	margin := a.cfg.FenceMargin.Duration
	if margin <= 0 {
		margin = max(a.cfg.TTL.Duration/4, 200*time.Millisecond)
	}
	return newFence(a.log, socket, spawn, margin), nil
}

func (a *Agent) newElector(in *instance) *elector.Elector {
	maxLag := int64(-1)
	if in.cfg.MaxLag != nil {
		maxLag = *in.cfg.MaxLag
	}
	name := in.cfg.Name
	return elector.New(elector.Config{
		Client: a.cli, Service: name, Host: a.cfg.Host, Zone: a.cfg.Zone, Address: in.address,
		Priority: in.cfg.Priority, MaxLag: maxLag,
		Step: a.cfg.ElectionStep.Duration, FenceMargin: a.cfg.FenceMargin.Duration,
		HookTimeout: in.cfg.Hooks.Timeout.Duration, PromoteTimeout: in.cfg.Hooks.PromoteTimeout.Duration,
		Hooks:    execHooks{cfg: in.cfg.Hooks, log: a.log},
		Guard:    a.fence.forService(name, a.cfg.Host, in.cfg.Hooks.Demote, in.cfg.Hooks.Timeout.Duration),
		Restored: a.st.Terms[name],
		OnTerm:   func(epoch int64) { a.saveTerm(name, epoch) },
		Local:    in.local,
		Event: func(ev *pb.Event) {
			select {
			case a.events <- ev:
			default:
				a.log.Warn("agent: event queue full; dropping", "kind", ev.GetKind())
			}
		},
		Logger: a.log,
	})
}

// HTTPAddr is where the role endpoints listen, empty when off.
func (a *Agent) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// Acting reports whether this host is the acting primary of service.
func (a *Agent) Acting(service string) bool {
	in := a.instance(service)
	return in != nil && in.elector != nil && in.elector.Acting()
}

// Run checks and registers until ctx is done, then revokes the lease so the
// host's instances vanish at once, and returns nil. It survives etcd outages:
// registrations are retried, and a lost lease is replaced by a new one under
// which everything is registered again.
func (a *Agent) Run(ctx context.Context) error {
	defer a.cli.Close()
	a.startedAt = time.Now()
	// The prober outlives everything below but the client: a graceful
	// stop's resign and revoke must not wait on an unresponsive member.
	probeCtx, stopProbe := context.WithCancel(context.Background())
	var pwg sync.WaitGroup
	pwg.Go(func() { a.prober.run(probeCtx) })
	defer func() { stopProbe(); pwg.Wait() }()
	var wg sync.WaitGroup
	checkCtx, stopChecks := context.WithCancel(ctx)
	defer func() { stopChecks(); wg.Wait() }()

	// One round of checks first, so the first registration carries real health.
	for _, in := range a.instances {
		wg.Go(func() { a.checkOnce(checkCtx, in) })
	}
	wg.Wait()
	for _, in := range a.instances {
		wg.Go(func() { a.checkLoop(checkCtx, in) })
	}

	evCtx, stopEvents := context.WithCancel(context.Background())
	wg.Go(func() { a.writeEvents(evCtx) })
	defer stopEvents() // runs before wg.Wait above: queued events are drained
	if a.httpLn != nil {
		srv := &http.Server{Handler: a.roleHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() { _ = srv.Serve(a.httpLn) })
		defer func() { _ = srv.Close() }()
	}

	if a.fence != nil {
		defer a.fence.close()
	}
	lease := a.resume(ctx)
	if lease == nil {
		// The lease of the previous run is gone (etcd said so, or stayed
		// out of reach past resumeFor), so is any role it held: its
		// services are demoted before a new lease is taken.
		for _, in := range a.instances {
			if in.elector != nil {
				in.elector.DemoteRestored(ctx)
			}
		}
	}
	for ctx.Err() == nil {
		if lease == nil {
			var err error
			if lease, err = a.grant(ctx); err != nil {
				break // ctx done
			}
		}
		a.saveLease(lease)
		a.lease.Store(lease)
		a.serve(ctx, lease)
		lease = nil
	}
	// A graceful stop demoted every primary role; a restart must not resume
	// the lease and act on keys its demote hooks already gave up.
	a.saveLease(nil)
	return nil
}

// grant obtains a lease, retrying until etcd answers or ctx is done.
func (a *Agent) grant(ctx context.Context) (*Lease, error) {
	backoff := 250 * time.Millisecond
	for {
		gctx, cancel := context.WithTimeout(ctx, a.opts.WriteTimeout)
		l, err := grantLease(gctx, a.cli, a.cfg.TTL.Duration)
		cancel()
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		a.log.Warn("agent: cannot get a lease from etcd; retrying", "err", err, "in", backoff)
		sleepCtx(ctx, backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// serve registers everything under lease and keeps it current until the
// lease is lost (return, to be replaced) or ctx is done (revoke, return).
func (a *Agent) serve(ctx context.Context, lease *Lease) {
	if a.fence != nil {
		lease.mu.Lock()
		lease.onRenew = a.fence.renewed
		lease.mu.Unlock()
	}
	kctx, stopKeepAlive := context.WithCancel(context.Background())
	var kwg sync.WaitGroup
	kwg.Go(func() { lease.keepAlive(kctx) })
	defer func() { stopKeepAlive(); kwg.Wait() }()

	// Electors run under this lease once everything is registered. At a
	// graceful stop they resign first (demote hooks, keys deleted), while the
	// lease is still kept alive, and only then is the lease revoked.
	ectx, stopElectors := context.WithCancel(context.Background())
	var ewg sync.WaitGroup
	defer func() { stopElectors(); ewg.Wait() }()
	electorsStarted := false

	written := map[string]*pb.Instance{} // what etcd holds under this lease
	registered := false
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			stopElectors()
			ewg.Wait()
			if err := lease.revoke(a.opts.WriteTimeout); err != nil {
				a.log.Warn("agent: revoking the lease failed; registrations expire after the TTL", "err", err, "ttl", lease.TTL())
			} else {
				a.log.Info("agent: lease revoked; instances deregistered")
			}
			return
		case <-lease.Lost():
			a.log.Warn("agent: lease lost; registering again under a new lease", "lease", fmt.Sprintf("%x", lease.LeaseID()))
			return
		case <-a.changed:
		case <-retry.C:
		}
		var err error
		if !registered {
			err = a.register(ctx, lease, written)
			registered = err == nil
			if registered && !electorsStarted {
				electorsStarted = true
				for _, in := range a.instances {
					if in.elector != nil {
						ewg.Go(func() { _ = in.elector.Run(ectx, lease) })
					}
				}
			}
		} else {
			err = a.update(ctx, lease, written)
		}
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			lease.markLost()
			continue
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("agent: writing to etcd failed; retrying", "err", err)
			retry.Reset(500 * time.Millisecond)
		}
	}
}

// register writes the host and every instance under the lease in one txn.
func (a *Agent) register(ctx context.Context, lease *Lease, written map[string]*pb.Instance) error {
	host, err := registry.Encode(&pb.Host{
		Name: a.cfg.Host, Zone: a.cfg.Zone, AgentVersion: Version,
		StartedAt: timestamppb.New(a.startedAt), LeaseId: int64(lease.LeaseID()), LeaseTtlSeconds: int64(lease.TTL() / time.Second),
	})
	if err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpPut(registry.HostKey(a.cfg.Host), string(host), clientv3.WithLease(lease.LeaseID()))}
	records := a.records()
	for _, rec := range records {
		ops = append(ops, clientv3.OpPut(registry.InstanceKey(a.cfg.Host, rec.Service), registry.MustEncode(rec), clientv3.WithLease(lease.LeaseID())))
	}
	wctx, cancel := context.WithTimeout(ctx, a.opts.WriteTimeout)
	defer cancel()
	if _, err := a.cli.Txn(wctx).Then(ops...).Commit(); err != nil {
		return err
	}
	for _, rec := range records {
		written[rec.Service] = rec
	}
	a.log.Info("agent: registered", "lease", fmt.Sprintf("%x", lease.LeaseID()), "ttl", lease.TTL(), "instances", len(records))
	return nil
}

// update writes the instances whose health or freshness differs from what
// etcd holds.
func (a *Agent) update(ctx context.Context, lease *Lease, written map[string]*pb.Instance) error {
	for _, rec := range a.records() {
		if w := written[rec.Service]; w != nil && w.GetHealth() == rec.GetHealth() && w.GetFreshness() == rec.GetFreshness() {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, a.opts.WriteTimeout)
		_, err := a.cli.Put(wctx, registry.InstanceKey(a.cfg.Host, rec.Service), registry.MustEncode(rec), clientv3.WithLease(lease.LeaseID()))
		cancel()
		if err != nil {
			return err
		}
		written[rec.Service] = rec
	}
	return nil
}

func (a *Agent) records() []*pb.Instance {
	out := make([]*pb.Instance, len(a.instances))
	for i, in := range a.instances {
		out[i] = in.record(a.cfg.Host, a.cfg.Zone)
	}
	return out
}

func (a *Agent) checkLoop(ctx context.Context, in *instance) {
	t := time.NewTicker(in.cfg.Check.Interval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.checkOnce(ctx, in)
		}
	}
}

func (a *Agent) checkOnce(ctx context.Context, in *instance) {
	cctx, cancel := context.WithTimeout(ctx, in.cfg.Check.Timeout.Duration)
	out, err := in.checker.Check(cctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: a cancelled check says nothing about the service
	}
	if err != nil {
		out = err.Error()
	}
	fresh, freshChanged := a.readFreshness(ctx, in)
	in.mu.Lock()
	passing, changed := in.smoother.Observe(err == nil)
	if changed {
		in.passing, in.output, in.changedAt = passing, out, time.Now()
	}
	if freshChanged {
		in.fresh = fresh
	}
	in.mu.Unlock()
	if changed {
		a.log.Info("agent: health changed", "service", in.cfg.Name, "passing", passing, "output", out)
	}
	if changed || freshChanged {
		if in.elector != nil {
			in.elector.Poke()
		}
		select {
		case a.changed <- struct{}{}:
		default:
		}
	}
}

// readFreshness runs the freshness command, if any, and reports a new value.
func (a *Agent) readFreshness(ctx context.Context, in *instance) (int64, bool) {
	if in.freshness == nil {
		return 0, false
	}
	cctx, cancel := context.WithTimeout(ctx, in.cfg.Check.Timeout.Duration)
	out, err := in.freshness.Check(cctx)
	cancel()
	if err != nil {
		a.log.Warn("agent: freshness command failed", "service", in.cfg.Name, "err", err)
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		a.log.Warn("agent: freshness command did not print an integer", "service", in.cfg.Name, "output", out)
		return 0, false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return v, v != in.fresh
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
