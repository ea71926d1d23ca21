// Package chaos is the chaos runner of the end-to-end suite: on the
// five-host, three-zone topology of deploy/compose it injects faults in a
// seeded random order while writers and watchers follow the demo
// database's primary through the registry, then checks the invariants the
// design promises and reports failover times per fault kind.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-dev/understudy/e2e/cluster"
	"github.com/understudy-dev/understudy/e2e/kvdemo"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/client"
)

const (
	dbService   = cluster.DBService
	poolService = cluster.PoolService
)

// Config of a chaos run.
type Config struct {
	Cluster *cluster.Cluster
	// Rounds of faults; Seed orders them. Every kind in Kinds comes once
	// in each block of len(Kinds) rounds.
	Rounds int
	Seed   uint64
	Kinds  []string
	// TTL of the agents' leases (deploy/compose/agents): faults that last
	// "past the TTL" are held this long and more.
	TTL time.Duration
	// Writers and Watchers following the primary. Defaults 2 and 3. In
	// noask mode every other writer holds its connection (see writer).
	Writers, Watchers int
	// RecoverWithin bounds each round's wait for a primary; SteadyWithin
	// the wait for every registration to come back. Defaults 30s and 120s.
	RecoverWithin, SteadyWithin time.Duration
	// Logf receives progress lines.
	Logf func(format string, args ...any)
	// ClientLog receives the registry clients' logs (default: discarded).
	ClientLog *slog.Logger
}

// runner holds one chaos run: its clients and its workload.
type runner struct {
	cfg      Config
	writers  []*writer
	watchers []*watcher
	status   *client.Client
	etcd     *clientv3.Client
}

// round is one fault and the cluster's reaction to it.
type round struct {
	n                  int
	kind, target       string
	start, injected    time.Time
	primaryBefore      string
	epochBefore        int64
	primaryAfter       string
	epochAfter         int64
	moved              bool
	failover, writeGap time.Duration
	stale, refused     int
	// leaderHit: the fault took down the etcd leader too, so the survivors
	// first elect one, and etcd then renews every lease for a full TTL.
	leaderHit bool
	// diverged: late, unacknowledged writes of a superseded term a frozen
	// host took on thaw (noask mode, host-freeze only; see divergedExempt).
	diverged   int
	violations []string
}

// Schedule returns the fault kinds of a run: blocks of every kind, each
// block shuffled by the seed.
func Schedule(rounds int, seed uint64, kinds []string) []string {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	var out []string
	for len(out) < rounds {
		block := slices.Clone(kinds)
		rng.Shuffle(len(block), func(i, j int) { block[i], block[j] = block[j], block[i] })
		out = append(out, block...)
	}
	return out[:rounds]
}

func (c *Config) setDefaults() error {
	if c.Cluster == nil {
		return errors.New("chaos: no cluster")
	}
	if len(c.Kinds) == 0 {
		c.Kinds = Kinds
	}
	for _, k := range c.Kinds {
		if !slices.Contains(Kinds, k) {
			return fmt.Errorf("chaos: fault kind %q: want one of %s", k, strings.Join(Kinds, ", "))
		}
	}
	if c.Rounds <= 0 {
		return fmt.Errorf("chaos: rounds %d: want at least 1", c.Rounds)
	}
	if c.TTL <= 0 {
		c.TTL = 3 * time.Second
	}
	if c.Writers <= 0 {
		c.Writers = 2
	}
	if c.Watchers <= 0 {
		c.Watchers = 3
	}
	if c.RecoverWithin <= 0 {
		c.RecoverWithin = 30 * time.Second
	}
	if c.SteadyWithin <= 0 {
		c.SteadyWithin = 120 * time.Second
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.ClientLog == nil {
		c.ClientLog = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run injects cfg.Rounds faults into the running cluster, then checks the
// invariants over everything recorded. A non-nil error means the run could
// not be carried out (docker failed, the cluster never became steady);
// broken invariants are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	rn := &runner{cfg: cfg}
	var err error
	if rn.etcd, err = cfg.Cluster.Etcd(); err != nil {
		return nil, err
	}
	defer func() { _ = rn.etcd.Close() }()
	scfg := client.DefaultConfig(cfg.Cluster.RegistryAddrs()...)
	scfg.Logger = cfg.ClientLog
	if rn.status, err = client.NewFromConfig(ctx, scfg); err != nil {
		return nil, err
	}
	defer rn.status.Close()

	wctx, stopWorkload := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopWorkload(); wg.Wait() }()
	if err := rn.startWorkload(wctx, &wg); err != nil {
		return nil, err
	}
	if err := rn.waitSteady(ctx, "before the first round"); err != nil {
		return nil, err
	}
	startRev, err := rn.revision(ctx)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	faults := rn.faults()
	var rounds []*round
	for i, kind := range Schedule(cfg.Rounds, cfg.Seed, cfg.Kinds) {
		r := &round{n: i + 1, kind: kind}
		if err := rn.runRound(ctx, r, faults[kind]); err != nil {
			return nil, fmt.Errorf("round %d (%s): %w", r.n, kind, err)
		}
		rounds = append(rounds, r)
		cfg.Logf("round %d %-15s target %-12s primary %s@%d -> %s@%d failover %v write gap %v stale %d violations %d",
			r.n, r.kind, r.target, r.primaryBefore, r.epochBefore, r.primaryAfter, r.epochAfter,
			r.failover.Round(time.Millisecond), r.writeGap.Round(time.Millisecond), r.stale, len(r.violations))
	}
	// Stop the workload before reading the logs. A write cut off in flight
	// may be logged without an acknowledgement; the checker allows that.
	stopWorkload()
	wg.Wait()
	h, err := rn.collect(ctx, startRev)
	if err != nil {
		return nil, err
	}
	return rn.report(started, rounds, h), nil
}

func (rn *runner) startWorkload(ctx context.Context, wg *sync.WaitGroup) error {
	addrs := rn.cfg.Cluster.RegistryAddrs()
	rotate := func(i int) []string { // each client starts on another server
		i %= len(addrs)
		return append(slices.Clone(addrs[i:]), addrs[:i]...)
	}
	for i := range rn.cfg.Writers {
		// In noask mode writer1, 3… hold their connection, writer2, 4… follow
		// the registry on each write.
		w, err := newWriter(ctx, fmt.Sprintf("writer%d", i+1), rn.noask(), i%2 == 0, rotate(i), rn.cfg.ClientLog)
		if err != nil {
			return err
		}
		rn.writers = append(rn.writers, w)
		wg.Go(func() { w.run(ctx) })
	}
	for i := range rn.cfg.Watchers {
		w, err := newWatcher(ctx, fmt.Sprintf("watcher%d", i+1), rotate(i+rn.cfg.Writers), rn.cfg.ClientLog)
		if err != nil {
			return err
		}
		rn.watchers = append(rn.watchers, w)
		wg.Go(func() { w.run(ctx) })
	}
	return nil
}

func (rn *runner) runRound(ctx context.Context, r *round, f fault) error {
	r.start = time.Now()
	p, ok := rn.status.Primary(dbService)
	if !ok {
		return errors.New("no primary before the fault")
	}
	r.primaryBefore, r.epochBefore = p.GetHost(), p.GetEpoch()
	staleBefore, refusedBefore := rn.refusals()
	leader, _ := rn.cfg.Cluster.EtcdLeader(ctx)

	r.injected = time.Now()
	target, err := f.inject(ctx, r)
	if err != nil {
		return err
	}
	r.target = target
	r.leaderHit = leader.Name != "" && (target == leader.Name || target == leader.Zone ||
		target == leader.Name+"/server" || target == "all")
	rn.cfg.Logf("round %d: %s on %s", r.n, r.kind, target)
	mustMove := f.mustMove(r)
	// A timed fault heals holdFor after the injection, recovered or not;
	// any other once the cluster recovered and holdFor passed.
	healed := make(chan error, 1)
	heal := func() {
		if err := sleepCtx(ctx, time.Until(r.injected.Add(f.holdFor))); err != nil {
			healed <- err
			return
		}
		if f.heal != nil {
			healed <- f.heal(ctx, r)
			return
		}
		healed <- nil
	}
	if f.timed {
		go heal()
	}
	if err := rn.waitRecovered(ctx, r, mustMove); err != nil {
		r.violations = append(r.violations, err.Error())
	}
	if !f.timed {
		heal()
	}
	if err := <-healed; err != nil {
		return err
	}
	if rn.noask() {
		rn.checkStray(ctx, r)
	}
	if err := rn.waitSteady(ctx, "after healing"); err != nil {
		r.violations = append(r.violations, "registrations did not come back: "+err.Error())
	}
	stale, refused := rn.refusals()
	r.stale, r.refused = stale-staleBefore, refused-refusedBefore
	r.writeGap = rn.writeGap(r.injected, time.Now())
	if f.keepRole {
		rn.checkKept(r, f.holdFor)
	}
	return nil
}

func (rn *runner) noask() bool { return rn.cfg.Cluster.Mode == cluster.ModeNoAsk }

// checkStray waits up to 3×TTL for every database server the registry
// does not name primary to stop acting as one (a restarted agent that lost
// its lease demotes first; a demote hook reaches a server that was down).
// Each one still acting is an ErrStrayPrimary, and is demoted by hand so
// that its writers move on and later rounds test something.
func (rn *runner) checkStray(ctx context.Context, r *round) {
	start := time.Now()
	deadline := start.Add(3 * rn.cfg.TTL)
	for {
		strays, down := rn.strays(ctx)
		if len(strays) == 0 && down == 0 {
			return
		}
		if len(strays) == 0 && time.Now().After(deadline) {
			return // waitSteady reports a database that stays down
		}
		if time.Now().After(deadline) {
			for _, st := range strays {
				msg := fmt.Sprintf("%v: %s still primary at epoch %d %v after healing (registry: %s); demoted by hand",
					ErrStrayPrimary, st.Host, st.Epoch, time.Since(start).Round(time.Second), rn.primaryText())
				r.violations = append(r.violations, msg)
				rn.cfg.Logf("round %d: %s", r.n, msg)
				if err := rn.cfg.Cluster.KVDemote(ctx, rn.cfg.Cluster.Host(st.Host)); err != nil {
					rn.cfg.Logf("round %d: demoting %s: %v", r.n, st.Host, err)
				}
			}
			return
		}
		if sleepCtx(ctx, 200*time.Millisecond) != nil {
			return
		}
	}
}

// strays are the running database servers that act as primary of another
// term than the registry's primary; down counts those that did not answer
// (a restarted host's server comes back as primary of its last term).
func (rn *runner) strays(ctx context.Context) (out []kvdemo.State, down int) {
	p, ok := rn.status.Primary(dbService)
	for _, h := range rn.cfg.Cluster.Hosts {
		if !h.DB {
			continue
		}
		st, err := rn.cfg.Cluster.KVState(ctx, h)
		if err != nil {
			down++
			continue
		}
		if st.Role == kvdemo.RolePrimary && (!ok || st.Host != p.GetHost() || st.Epoch != p.GetEpoch()) {
			out = append(out, st)
		}
	}
	return out, down
}

func (rn *runner) primaryText() string {
	if p, ok := rn.status.Primary(dbService); ok {
		return fmt.Sprintf("%s@%d", p.GetHost(), p.GetEpoch())
	}
	return "no primary"
}

// checkKept: the primary kept its term through the round, and writes
// never stopped for longer than the fault was held.
func (rn *runner) checkKept(r *round, hold time.Duration) {
	epochs := map[int64]bool{}
	for _, w := range rn.writers {
		for _, a := range w.acksSince(r.injected) {
			epochs[a.Epoch] = true
		}
	}
	delete(epochs, r.epochBefore)
	if len(epochs) > 0 || rn.primaryText() != fmt.Sprintf("%s@%d", r.primaryBefore, r.epochBefore) {
		r.violations = append(r.violations, fmt.Sprintf("%v: %s@%d before, %s now, writes acknowledged at %d other epochs",
			ErrRoleNotKept, r.primaryBefore, r.epochBefore, rn.primaryText(), len(epochs)))
	}
	if r.writeGap > hold {
		r.violations = append(r.violations, fmt.Sprintf("%v: writes stopped for %v, the fault was held %v",
			ErrRoleNotKept, r.writeGap.Round(time.Millisecond), hold))
	}
}

// waitUnhealthy waits until the registry shows db on host not passing.
func (rn *runner) waitUnhealthy(ctx context.Context, host string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		passing := false
		if v, ok := rn.status.View(dbService); ok {
			for _, in := range v.GetInstances() {
				if in.GetHost() == host && in.GetHealth() == pb.Health_HEALTH_PASSING {
					passing = true
				}
			}
		}
		if !passing {
			return nil
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("db on %s still passing %v after its server was stopped", host, within)
}

// waitRecovered waits for a primary that writers reach: a new one (higher
// epoch) when the fault must move the role.
func (rn *runner) waitRecovered(ctx context.Context, r *round, mustMove bool) error {
	// From the end of the injection: a rolling restart injects for minutes.
	deadline := time.Now().Add(rn.cfg.RecoverWithin)
	for time.Now().Before(deadline) {
		if ack, ok := rn.firstAckAfter(r.injected, r.epochBefore, mustMove); ok {
			r.primaryAfter, r.epochAfter = ack.Host, ack.Epoch
			r.moved = ack.Epoch != r.epochBefore
			if r.moved {
				// The client-visible failover: the first watcher told of it.
				first := time.Time{}
				for _, w := range rn.watchers {
					if s, ok := w.firstAfter(r.injected, r.epochBefore); ok && (first.IsZero() || s.At.Before(first)) {
						first = s.At
					}
				}
				if first.IsZero() {
					first = ack.At
				}
				r.failover = first.Sub(r.injected)
			}
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	what := "no primary took writes"
	if mustMove {
		what = fmt.Sprintf("no new primary (epoch above %d) took writes", r.epochBefore)
	}
	return fmt.Errorf("%s within %v of the fault", what, time.Since(r.injected).Round(time.Second))
}

// firstAckAfter is the first write acknowledged after t, by a new primary
// if newOnly.
func (rn *runner) firstAckAfter(t time.Time, epoch int64, newOnly bool) (Ack, bool) {
	var best Ack
	found := false
	for _, w := range rn.writers {
		for _, a := range w.acksSince(t) {
			if newOnly && a.Epoch <= epoch {
				continue
			}
			if !found || a.At.Before(best.At) {
				best, found = a, true
			}
			break
		}
	}
	return best, found
}

// writeGap is the longest time in [from, to] without an acknowledged write.
func (rn *runner) writeGap(from, to time.Time) time.Duration {
	var at []time.Time
	for _, w := range rn.writers {
		for _, a := range w.acksSince(from) {
			if a.At.Before(to) {
				at = append(at, a.At)
			}
		}
	}
	slices.SortFunc(at, time.Time.Compare)
	gap, prev := time.Duration(0), from
	for _, t := range append(at, to) {
		gap = max(gap, t.Sub(prev))
		prev = t
	}
	return gap
}

// refusals sums the writers' refused writes so far: for a stale epoch, and
// for any other reason (not the primary, lease not confirmed, unreachable).
func (rn *runner) refusals() (stale, other int) {
	for _, w := range rn.writers {
		s, o := w.counts()
		stale, other = stale+s, other+o
	}
	return stale, other
}

// waitSteady waits until every member, host and instance is back: both
// database hosts passing with a primary that takes writes, all three pool
// members passing, all five etcd members answering.
func (rn *runner) waitSteady(ctx context.Context, when string) error {
	start := time.Now()
	deadline := start.Add(rn.cfg.SteadyWithin)
	var missing []string
	for time.Now().Before(deadline) {
		missing = rn.missing(ctx, start)
		if len(missing) == 0 {
			return nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s, still missing after %v: %s", when, rn.cfg.SteadyWithin, strings.Join(missing, "; "))
}

func (rn *runner) missing(ctx context.Context, since time.Time) []string {
	var missing []string
	c := rn.cfg.Cluster
	for _, h := range c.Hosts {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := rn.etcd.Status(sctx, "http://"+h.IP+":"+cluster.EtcdPort)
		cancel()
		if err != nil {
			missing = append(missing, "etcd member "+h.Name)
		}
	}
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	resp, err := rn.etcd.Get(gctx, registry.HostsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	cancel()
	switch {
	case err != nil:
		missing = append(missing, "hosts: "+err.Error())
	case int(resp.Count) != len(c.Hosts):
		missing = append(missing, fmt.Sprintf("%d of %d host records", resp.Count, len(c.Hosts)))
	}
	for _, svc := range []string{dbService, poolService} {
		v, ok := rn.status.View(svc)
		if !ok || v.GetStale() {
			missing = append(missing, "a current view of "+svc)
			continue
		}
		passing := map[string]bool{}
		for _, in := range v.GetInstances() {
			passing[in.GetHost()] = in.GetHealth() == pb.Health_HEALTH_PASSING
		}
		for _, h := range c.Hosts {
			if h.DB == (svc == dbService) && !passing[h.Name] {
				missing = append(missing, svc+" on "+h.Name)
			}
		}
	}
	p, ok := rn.status.Primary(dbService)
	if !ok {
		return append(missing, "a primary of db")
	}
	if a, ok := rn.firstAckAfter(since, p.GetEpoch()-1, true); !ok || a.Epoch != p.GetEpoch() {
		missing = append(missing, fmt.Sprintf("a write accepted by %s at epoch %d", p.GetHost(), p.GetEpoch()))
	}
	return missing
}

func (rn *runner) revision(ctx context.Context) (int64, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := rn.etcd.Get(gctx, registry.PrimaryKey(dbService))
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// sleepCtx waits d (nothing when d ≤ 0) or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
