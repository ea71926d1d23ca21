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
)

// Kinds lists every fault kind.
var Kinds = []string{HostCrash, ServiceCrash, HostFreeze, ZoneCut, DCDark, EtcdLeader, FullRestart, RollingRestart}

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
}

func (rn *runner) faults() map[string]fault {
	c := rn.cfg.Cluster
	always := func(*round) bool { return true }
	never := func(*round) bool { return false }
	primary := func(r *round) cluster.Host { return c.Host(r.primaryBefore) }
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
	}
}
