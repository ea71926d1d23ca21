package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/understudy-dev/understudy/e2e/cluster"
)

// Fault kinds, in the order the report lists them.
const (
	HostCrash      = "host-crash"      // docker kill of the primary's host
	ServiceCrash   = "service-crash"   // the primary's database process killed
	HostFreeze     = "host-freeze"     // docker pause of the primary's host past the TTL
	ZoneCut        = "zone-cut"        // the primary's zone cut off from the others
	DCDark         = "dc-dark"         // both dc hosts killed: the cloud zones carry on
	EtcdLeader     = "etcd-leader"     // the etcd leader's member process killed
	FullRestart    = "full-restart"    // every host killed, then all started
	RollingRestart = "rolling-restart" // each host stopped gracefully and started, one by one
	AgentFreeze    = "agent-freeze"    // SIGSTOP of the primary's agent alone for 3×TTL
	AgentKill      = "agent-kill"      // SIGKILL of the primary's agent, restarted after 2×TTL
	EtcdFreeze     = "etcd-freeze"     // SIGSTOP of the etcd member on the primary's host for 3×TTL
	SlowCheck      = "slow-check"      // the standby down, then the primary's check too slow
	ServiceFreeze  = "service-freeze"  // SIGSTOP of the primary's database process for 3×TTL
)

// Kinds lists every fault kind.
var Kinds = []string{HostCrash, ServiceCrash, HostFreeze, ZoneCut, DCDark, EtcdLeader, FullRestart, RollingRestart,
	AgentFreeze, AgentKill, EtcdFreeze, SlowCheck, ServiceFreeze}

// fault is one kind of failure: inject breaks something, heal repairs it.
type fault struct {
	// mustMove: the round must end with a new primary (a higher epoch).
	// Otherwise any primary will do, as long as writes go on.
	mustMove func(r *round) bool
	// inject breaks something and returns what it hit.
	inject func(ctx context.Context, r *round) (target string, err error)
	// heal undoes inject once the cluster has reacted (nil: nothing to do).
	heal func(ctx context.Context, r *round) error
	// holdFor is how long the fault lasts at least before heal, even when
	// the cluster recovered sooner.
	holdFor time.Duration
	// timed: heal exactly holdFor after the injection, recovered or not
	// (a freeze of a fixed length). Otherwise heal waits for recovery too.
	timed bool
	// keepRole: the primary must keep its role (same epoch) and writes
	// must not stop for longer than holdFor (ErrRoleNotKept).
	keepRole bool
}

func (rn *runner) faults() map[string]fault {
	c := rn.cfg.Cluster
	always := func(*round) bool { return true }
	never := func(*round) bool { return false }
	primary := func(r *round) cluster.Host { return c.Host(r.primaryBefore) }
	standby := func(r *round) cluster.Host { // the other database host
		for _, h := range c.Hosts {
			if h.DB && h.Name != r.primaryBefore {
				return h
			}
		}
		panic("chaos: one database host only")
	}
	ttl := rn.cfg.TTL
	return map[string]fault{
		HostCrash: {
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore, c.Kill(ctx, primary(r))
			},
			heal: func(ctx context.Context, r *round) error { return c.Start(ctx, primary(r)) },
		},
		ServiceCrash: {
			// The host's init restarts the database a second later, as a
			// standby: only a promote hook makes it primary again.
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore + "/app", c.KillProcess(ctx, primary(r), "app")
			},
		},
		HostFreeze: {
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore, c.Pause(ctx, primary(r))
			},
			heal:    func(ctx context.Context, r *round) error { return c.Unpause(ctx, primary(r)) },
			holdFor: rn.cfg.TTL + time.Second,
		},
		ZoneCut: {
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				z := primary(r).Zone
				return z, c.CutZone(ctx, z)
			},
			heal: func(ctx context.Context, r *round) error { return c.HealZone(ctx, primary(r).Zone) },
			// Long enough for the cut-off primary to fence and the writers
			// (who still reach it) to try it with an old epoch.
			holdFor: rn.cfg.TTL + 2*time.Second,
		},
		DCDark: {
			mustMove: func(r *round) bool { return primary(r).Zone == cluster.ZoneDC },
			inject: func(ctx context.Context, _ *round) (string, error) {
				return cluster.ZoneDC, c.Kill(ctx, c.InZone(cluster.ZoneDC)...)
			},
			heal:    func(ctx context.Context, _ *round) error { return c.Start(ctx, c.InZone(cluster.ZoneDC)...) },
			holdFor: rn.cfg.TTL + 2*time.Second,
		},
		EtcdLeader: {
			mustMove: never,
			inject: func(ctx context.Context, _ *round) (string, error) {
				h, err := c.EtcdLeader(ctx)
				if err != nil {
					return "", err
				}
				return h.Name + "/server", c.KillProcess(ctx, h, "server")
			},
		},
		FullRestart: {
			mustMove: never,
			inject: func(ctx context.Context, _ *round) (string, error) {
				if err := c.Kill(ctx, c.Hosts...); err != nil {
					return "", err
				}
				return "all", c.Start(ctx, c.Hosts...)
			},
		},
		RollingRestart: {
			mustMove: never,
			inject: func(ctx context.Context, r *round) (string, error) {
				for _, h := range c.Hosts {
					if err := c.Stop(ctx, h); err != nil {
						return "", err
					}
					if err := c.Start(ctx, h); err != nil {
						return "", err
					}
					if err := rn.waitSteady(ctx, fmt.Sprintf("after restarting %s", h.Name)); err != nil {
						return "", err
					}
				}
				return "all", nil
			},
		},
		AgentFreeze: {
			// The database keeps running and taking writes on its held
			// connections: only something that does not need the agent's
			// loop can demote it by the lease's fence point.
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore + "/agent", c.Signal(ctx, primary(r), "agent", "STOP")
			},
			heal:    func(ctx context.Context, r *round) error { return c.Signal(ctx, primary(r), "agent", "CONT") },
			holdFor: 3 * ttl,
			timed:   true,
		},
		ServiceFreeze: {
			// A database that hangs: its check times out, and the demote
			// hook cannot reach it. The hook records the demotion on disk
			// and kills the process (it restarts as a standby); until the
			// hook succeeded the old primary keeps its leader key, so no
			// standby is promoted over a database that may wake up writable.
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore + "/app", c.Signal(ctx, primary(r), "app", "STOP")
			},
			heal:    func(ctx context.Context, r *round) error { return c.Signal(ctx, primary(r), "app", "CONT") },
			holdFor: 3 * ttl,
			timed:   true,
		},
		AgentKill: {
			// The host's init restarts the agent only after 2×TTL: the
			// lease has expired by then, so the restarted agent must demote
			// first.
			mustMove: always,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore + "/agent", c.KillHeld(ctx, primary(r), "agent", 2*ttl)
			},
			holdFor: 2 * ttl,
			timed:   true,
		},
		EtcdFreeze: {
			// The agent's client uses every member, but is most likely on
			// the one beside it. The role need not move; writes must go on.
			mustMove: never,
			inject: func(ctx context.Context, r *round) (string, error) {
				return r.primaryBefore + "/server", c.Signal(ctx, primary(r), "server", "STOP")
			},
			heal:    func(ctx context.Context, r *round) error { return c.Signal(ctx, primary(r), "server", "CONT") },
			holdFor: 3 * ttl,
			timed:   true,
		},
		SlowCheck: {
			// The standby's database is held down (unhealthy), then the
			// primary's check turns slow: there is nobody to hand over to,
			// so the primary must keep its role, and writes go on.
			mustMove: never,
			keepRole: true,
			inject: func(ctx context.Context, r *round) (string, error) {
				sb := standby(r)
				if err := c.KillHeld(ctx, sb, "app", 4*ttl+time.Minute); err != nil {
					return "", err
				}
				if err := rn.waitUnhealthy(ctx, sb.Name, 10*time.Second); err != nil {
					return "", err
				}
				return r.primaryBefore + "/health", c.KVSlowHealth(ctx, primary(r), 4*ttl+time.Minute)
			},
			heal: func(ctx context.Context, r *round) error {
				if err := c.KVSlowHealth(ctx, primary(r), 0); err != nil {
					return err
				}
				return c.Release(ctx, standby(r), "app")
			},
			holdFor: 4 * ttl, // the slow check itself lasts about 3×TTL of it
			timed:   true,
		},
	}
}
