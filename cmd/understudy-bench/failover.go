package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

const (
	// failoverWarmup runs of each fast kind go unmeasured first.
	failoverWarmup = 2
	// settleTimeout bounds the wait for a primary with every instance passing.
	settleTimeout = 30 * time.Second
	// handoffTimeout bounds one switchover or check-failure handoff.
	handoffTimeout = 10 * time.Second
	// crashTimeout bounds one crash failover: the TTL plus plenty.
	crashTimeout = failoverTTL + 10*time.Second
	// rejoinTimeout bounds how long a healed agent may take to register again.
	rejoinTimeout = 60 * time.Second
)

// benchHosts are the failover bench's agents, in rank order (equal priority,
// so host name decides).
var benchHosts = []string{"b1", "b2", "b3"}

// failoverResult is what the failover bench measured. Every duration runs
// from the fault to the arrival of the first view showing the new primary
// at the Watch subscriber, unless said otherwise.
type failoverResult struct {
	runs, crashRuns int
	graceful        []time.Duration
	checkFail       []time.Duration
	// afterDetect runs from the first view that showed the check failure
	// (old primary's instance critical, or the old primary gone) to the new
	// primary; from the Fail when no such view came before the new primary.
	afterDetect []time.Duration
	detect      []time.Duration // Fail → that first view; 0 when not observable
	detectedBy  map[string]int  // which sign came first, per run
	floor       []time.Duration // etcd Resign → Observe reports the next leader
	crash       []time.Duration
	rejoin      []time.Duration // crash: heal → the old agent's instance passing again
	views       int             // views the subscriber received
	primaries   int             // of which brought a new primary
	reconnects  map[string]int  // per host: etcd connections re-opened outside the crash runs
}

// The first sign of a check failure a subscriber can see.
const (
	signCritical    = "instance critical"
	signPrimaryGone = "primary record gone"
	signNone        = "not observable"
)

// failoverBench is the failover part's running setup.
type failoverBench struct {
	srv    *serverProc
	cli    *clientv3.Client // writes the control key; runs the etcd floor
	agents map[string]*benchAgent
	views  *viewLog
}

// benchFailover starts a fresh server, three agents and a subscriber, and
// measures each kind of failover in turn.
func benchFailover(ctx context.Context, opts options) (res failoverResult, err error) {
	res = failoverResult{runs: opts.failoverRuns, crashRuns: opts.crashRuns, detectedBy: map[string]int{}, reconnects: map[string]int{}}
	progress("failover: starting %s server", opts.binary)
	srv, err := startServer(ctx, opts.binary, opts.logDir, "failover")
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := srv.stop(); serr != nil {
			progress("failover: server did not stop cleanly: %v", serr)
		}
	}()
	fb := &failoverBench{srv: srv, agents: map[string]*benchAgent{}}
	defer fb.close()
	// On failure, say where the details are.
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, srv.logTail(10))
		}
	}()

	if fb.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{srv.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		return res, fmt.Errorf("etcd client: %w", err)
	}
	log, closeLog, err := agentLogger(opts.logDir)
	if err != nil {
		return res, err
	}
	defer closeLog()
	for _, h := range benchHosts {
		a, err := startAgent(h, srv.etcdURL, log)
		if err != nil {
			return res, err
		}
		fb.agents[h] = a
	}
	if fb.views, err = watchViews(ctx, srv.grpcAddr, failoverService); err != nil {
		return res, err
	}
	if _, err := fb.settle(ctx); err != nil {
		return res, err
	}
	conns := map[string]int{}
	for h, a := range fb.agents {
		conns[h] = a.proxy.connections()
	}

	if res.graceful, err = repeat(ctx, "graceful switchover", failoverWarmup, opts.failoverRuns, fb.switchover); err != nil {
		return res, err
	}
	for i := range failoverWarmup + opts.failoverRuns {
		m, err := fb.checkFailure(ctx)
		if err != nil {
			return res, fmt.Errorf("check-failure handoff, run %d: %w", i+1, err)
		}
		if i < failoverWarmup {
			continue
		}
		res.checkFail = append(res.checkFail, m.total)
		res.afterDetect = append(res.afterDetect, m.afterDetect)
		res.detect = append(res.detect, m.detect)
		res.detectedBy[m.sign]++
	}
	progress("failover: check-failure handoff: %d runs done", opts.failoverRuns)
	if res.floor, err = etcdFloor(ctx, srv.etcdURL, failoverWarmup, opts.failoverRuns); err != nil {
		return res, fmt.Errorf("etcd floor: %w", err)
	}
	progress("failover: etcd floor: %d runs done", opts.failoverRuns)
	for h, a := range fb.agents {
		res.reconnects[h] = a.proxy.connections() - conns[h]
	}
	for i := range opts.crashRuns {
		d, rejoin, err := fb.crashFailover(ctx)
		if err != nil {
			return res, fmt.Errorf("crash failover, run %d: %w", i+1, err)
		}
		res.crash = append(res.crash, d)
		res.rejoin = append(res.rejoin, rejoin)
		progress("failover: crash %d/%d: new primary after %v, old agent back %v after heal", i+1, opts.crashRuns, d.Round(time.Millisecond), rejoin.Round(time.Millisecond))
	}
	var regressed []string
	res.views, res.primaries, regressed = fb.views.stats()
	if len(regressed) > 0 {
		return res, fmt.Errorf("epochs did not increase: %v", regressed)
	}
	return res, nil
}

// repeat runs measure warm+runs times and keeps the last runs results.
func repeat(ctx context.Context, kind string, warm, runs int, measure func(context.Context) (time.Duration, error)) ([]time.Duration, error) {
	var out []time.Duration
	for i := range warm + runs {
		d, err := measure(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s, run %d: %w", kind, i+1, err)
		}
		if i >= warm {
			out = append(out, d)
		}
	}
	progress("failover: %s: %d runs done", kind, runs)
	return out, nil
}

// agentLogger sends the agents' logs to DIR/agents-failover.log when a log
// directory is set, else nowhere.
func agentLogger(logDir string) (*slog.Logger, func(), error) {
	if logDir == "" {
		return slog.New(slog.DiscardHandler), func() {}, nil
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("-server-log-dir: %w", err)
	}
	f, err := os.Create(filepath.Join(logDir, "agents-failover.log"))
	if err != nil {
		return nil, nil, err
	}
	return slog.New(slog.NewTextHandler(f, nil)), func() { _ = f.Close() }, nil
}

// close stops the subscriber, then the agents (gracefully: each resigns and
// revokes its lease), then the etcd client.
func (fb *failoverBench) close() {
	if fb.views != nil {
		fb.views.close()
	}
	for _, a := range fb.agents {
		a.stop()
	}
	if fb.cli != nil {
		_ = fb.cli.Close()
	}
}

// settle waits until the subscriber's latest view has a primary and every
// bench host's instance passing, and returns that primary.
func (fb *failoverBench) settle(ctx context.Context) (*pb.Primary, error) {
	_, sv, err := fb.views.wait(ctx, fb.views.latest(), settleTimeout, "a primary with every instance passing", func(v *pb.View) bool {
		if v.GetPrimary() == nil || v.GetStatus() != pb.Status_STATUS_READ_WRITE {
			return false
		}
		for _, h := range benchHosts {
			if instanceOf(v, h).GetHealth() != pb.Health_HEALTH_PASSING {
				return false
			}
		}
		return true
	})
	return sv.view.GetPrimary(), err
}

// dephase sleeps a random time in [0, period). Each run starts right after
// a view that the agents' periodic work caused (a check, a registration
// after a lease grant), so without it every fault would land at the same
// phase of that work: a check failure always a whole interval before the
// next check, a crash always just after a lease renewal.
func dephase(ctx context.Context, period time.Duration) error {
	t := time.NewTimer(rand.N(period))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// replaced matches a view whose primary is another host with a higher epoch.
func replaced(old *pb.Primary) func(*pb.View) bool {
	return func(v *pb.View) bool {
		p := v.GetPrimary()
		return p != nil && p.GetHost() != old.GetHost() && p.GetEpoch() > old.GetEpoch()
	}
}

// switchover asks the primary to hand over to the best standby, as
// `understudy switchover db` would, and times it until the subscriber sees
// the new primary.
func (fb *failoverBench) switchover(ctx context.Context) (time.Duration, error) {
	old, err := fb.settle(ctx)
	if err != nil {
		return 0, err
	}
	val, err := registry.Encode(&pb.Control{SwitchoverFrom: old.GetHost(), RequestedAt: timestamppb.Now()})
	if err != nil {
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	from := fb.views.mark()
	t0 := time.Now()
	if _, err := fb.cli.Put(pctx, registry.ControlKey(failoverService), string(val)); err != nil {
		return 0, fmt.Errorf("control put: %w", err)
	}
	_, got, err := fb.views.wait(ctx, from, handoffTimeout, "a new primary after "+old.GetHost(), replaced(old))
	if err != nil {
		return 0, err
	}
	return got.at.Sub(t0), nil
}

// handoff is one check-failure run's figures.
type handoff struct {
	total       time.Duration // Fail → new primary
	detect      time.Duration // Fail → first sign of the failure; 0 when none came first
	afterDetect time.Duration // that sign (or Fail) → new primary
	sign        string
}

// checkFailure fails the primary's demo service so its check fails, times
// the handoff, then heals the service.
func (fb *failoverBench) checkFailure(ctx context.Context) (handoff, error) {
	old, err := fb.settle(ctx)
	if err != nil {
		return handoff{}, err
	}
	svc := fb.agents[old.GetHost()].svc
	if err := dephase(ctx, checkInterval); err != nil {
		return handoff{}, err
	}
	from := fb.views.mark()
	t0 := time.Now()
	svc.Fail()
	defer func() {
		if err := svc.Heal(); err != nil {
			progress("failover: cannot heal %s's demo service: %v", old.GetHost(), err)
		}
	}()
	iNew, got, err := fb.views.wait(ctx, from, handoffTimeout, "a new primary after "+old.GetHost(), replaced(old))
	if err != nil {
		return handoff{}, err
	}
	h := handoff{total: got.at.Sub(t0), afterDetect: got.at.Sub(t0), sign: signNone}
	// The view at iNew matches, so this returns at once.
	iDet, det, err := fb.views.wait(ctx, from, time.Second, "a sign of the failure", func(v *pb.View) bool {
		return instanceOf(v, old.GetHost()).GetHealth() == pb.Health_HEALTH_CRITICAL || v.GetPrimary().GetHost() != old.GetHost()
	})
	if err != nil {
		return handoff{}, err
	}
	if iDet < iNew {
		h.detect, h.afterDetect = det.at.Sub(t0), got.at.Sub(det.at)
		h.sign = signPrimaryGone
		if instanceOf(det.view, old.GetHost()).GetHealth() == pb.Health_HEALTH_CRITICAL {
			h.sign = signCritical
		}
	}
	return h, nil
}

// crashFailover cuts the primary's agent off from etcd, as a crash would look
// to etcd (its keepalives stop; nothing is revoked), times the failover,
// then heals the cut and waits for the old agent to register again. It
// returns the failover time and how long the old agent took to come back.
func (fb *failoverBench) crashFailover(ctx context.Context) (failover, rejoin time.Duration, err error) {
	old, err := fb.settle(ctx)
	if err != nil {
		return 0, 0, err
	}
	px := fb.agents[old.GetHost()].proxy
	if err := dephase(ctx, keepAlivePeriod); err != nil {
		return 0, 0, err
	}
	from := fb.views.mark()
	t0 := time.Now()
	px.blackhole()
	_, got, err := fb.views.wait(ctx, from, crashTimeout, "a new primary after "+old.GetHost()+" was cut off", replaced(old))
	px.heal() // also on error, so that the next run or the shutdown finds it connected
	healed := time.Now()
	if err != nil {
		return 0, 0, err
	}
	// The old instance went with the lease, before the new primary came;
	// it counts as back once registered and passing again.
	iGone, _, err := fb.views.wait(ctx, from, time.Second, old.GetHost()+"'s instance gone", func(v *pb.View) bool {
		return instanceOf(v, old.GetHost()) == nil
	})
	if err != nil {
		return 0, 0, err
	}
	_, back, err := fb.views.wait(ctx, iGone, rejoinTimeout, old.GetHost()+" registered again after the heal", func(v *pb.View) bool {
		return instanceOf(v, old.GetHost()).GetHealth() == pb.Health_HEALTH_PASSING
	})
	if err != nil {
		return 0, 0, err
	}
	return got.at.Sub(t0), back.at.Sub(healed), nil
}
