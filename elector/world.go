package elector

import (
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// world is what the elector knows of its service's keys. Only the elector's
// own goroutine touches it.
type world struct {
	service string
	rev     int64 // the world reflects etcd up to this revision

	leader      *pb.Leader // nil when the leader key is absent
	leaderEpoch int64      // its create revision
	leaderLease clientv3.LeaseID
	primary     *pb.Primary
	control     *pb.Control
	controlRev  int64                   // mod revision of the control key; 0 when absent
	mark        *pb.Mark                // the durable high-water mark; nil when none
	instances   map[string]*pb.Instance // by host
	hosts       map[string]bool         // hosts with a live agent
	hostGoneRev int64                   // revision of the last host record deletion

	// reference is the freshest value ever reported by a primary's
	// instance: what a standby's lag is measured against.
	reference int64
	// gone describes how the last leader went away, for event reasons.
	gone struct {
		host         string
		epoch        int64
		rev          int64 // revision the leader key was deleted at
		leaseExpired bool
	}
}

func newWorld(service string) *world {
	return &world{service: service, instances: map[string]*pb.Instance{}, hosts: map[string]bool{}}
}

func (w *world) reset() {
	*w = *newWorld(w.service)
}

// relevant reports whether a key matters to this service's election.
func (w *world) relevant(k registry.Key) bool {
	switch k.Kind {
	case registry.KindHost:
		return true
	case registry.KindInstance, registry.KindLeader, registry.KindPrimary, registry.KindControl, registry.KindMark:
		return k.Service == w.service
	}
	return false
}

// apply takes one etcd event. A leader key deleted at the same revision as
// its host record went with the host's lease (expired or revoked); deleted
// alone, it was resigned.
func (w *world) apply(key string, kv *mvccpb.KeyValue, deleted bool) {
	k, err := registry.ParseKey(key)
	if err != nil || !w.relevant(k) {
		return
	}
	switch k.Kind {
	case registry.KindHost:
		if deleted {
			delete(w.hosts, k.Host)
			w.hostGoneRev = kv.ModRevision
			if k.Host == w.gone.host && kv.ModRevision == w.gone.rev {
				w.gone.leaseExpired = true
			}
		} else {
			w.hosts[k.Host] = true
		}
	case registry.KindInstance:
		in := &pb.Instance{}
		if deleted || registry.Decode(kv.Value, in) != nil {
			delete(w.instances, k.Host)
			return
		}
		in.Host, in.Service = k.Host, k.Service
		w.instances[k.Host] = in
		if w.primary != nil && w.primary.GetHost() == k.Host {
			w.reference = max(w.reference, in.GetFreshness())
		}
	case registry.KindLeader:
		if deleted {
			if w.leader != nil {
				w.gone.host, w.gone.epoch, w.gone.rev = w.leader.GetHost(), w.leaderEpoch, kv.ModRevision
				_, hostAlive := w.hosts[w.gone.host]
				w.gone.leaseExpired = !hostAlive && w.gone.rev > 0 && w.hostGoneRev == kv.ModRevision
			}
			w.leader, w.leaderEpoch, w.leaderLease = nil, 0, 0
			return
		}
		l := &pb.Leader{}
		if registry.Decode(kv.Value, l) != nil {
			// An unreadable leader key still holds the role: nobody may
			// campaign while it exists.
			l = &pb.Leader{Host: "(unreadable)"}
		}
		w.leader, w.leaderEpoch, w.leaderLease = l, kv.CreateRevision, clientv3.LeaseID(kv.Lease)
	case registry.KindPrimary:
		p := &pb.Primary{}
		if deleted || registry.Decode(kv.Value, p) != nil {
			w.primary = nil
			return
		}
		w.primary = p
		if in := w.instances[p.GetHost()]; in != nil {
			w.reference = max(w.reference, in.GetFreshness())
		}
	case registry.KindControl:
		c := &pb.Control{}
		w.controlRev = kv.ModRevision
		if deleted {
			w.controlRev = 0
		}
		if deleted || registry.Decode(kv.Value, c) != nil {
			w.control = nil
			return
		}
		w.control = c
	case registry.KindMark:
		m := &pb.Mark{}
		if deleted {
			w.mark = nil
			return
		}
		if registry.Decode(kv.Value, m) != nil {
			// An unreadable mark must not lower the bar: keep the last one.
			return
		}
		w.mark = m
	}
}

// highWater is the freshest value any primary of the service is known to
// have reported: the durable mark, or what this host saw a primary report.
func (w *world) highWater() int64 { return max(w.reference, w.mark.GetFreshness()) }

// takeoverPossible reports whether some host other than me could take the
// role over now: registered, healthy, not tagged nofailover, and within
// maxLag of the freshest known value (mine included, as the acting
// primary's is the freshest), or the operator's forced target.
func (w *world) takeoverPossible(me string, myFreshness, maxLag int64, forced string) bool {
	ref := max(w.highWater(), myFreshness)
	for host, in := range w.instances {
		if host == me || !w.hosts[host] || in.GetHealth() != pb.Health_HEALTH_PASSING || slices.Contains(in.GetTags(), registry.NoFailoverTag) {
			continue
		}
		if host == forced || maxLag < 0 || ref-in.GetFreshness() <= maxLag {
			return true
		}
	}
	return false
}

// switchoverReq is a pending operator request to move the role.
type switchoverReq struct {
	from string // the primary that must hand over; "" for a forced takeover of a free role
	to   string // the requested target; "" for the best ranked
	// force: the target may take over although it lags the high-water mark.
	force bool
}

// forcedTarget is the host allowed past the high-water mark, if any.
func (r switchoverReq) forcedTarget() string {
	if r.force {
		return r.to
	}
	return ""
}

// switchover returns the pending switchover, if any. A request older than
// maxAge is ignored.
func (w *world) switchover(now time.Time, maxAge time.Duration) (switchoverReq, bool) {
	c := w.control
	r := switchoverReq{from: c.GetSwitchoverFrom(), to: c.GetSwitchoverTo(), force: c.GetForce() && c.GetSwitchoverTo() != ""}
	if r.from == "" && !r.force || c.GetPaused() {
		return switchoverReq{}, false
	}
	if now.Sub(c.GetRequestedAt().AsTime()) > maxAge {
		return switchoverReq{}, false
	}
	if r.from == "" {
		// A forced takeover of a role nobody holds: moot once anyone holds it.
		return r, w.leader == nil
	}
	// The request is about one handover: it is moot once anyone but its
	// primary holds or last held the role, even if nobody cleared it.
	if w.leader != nil && w.leader.GetHost() != r.from || w.leader == nil && w.gone.host != r.from {
		return switchoverReq{}, false
	}
	return r, true
}

// candidates lists every registered instance for ranking, with self's
// entry replaced by its own current local state.
func (w *world) candidates(self string, local Local, priority int32) []Candidate {
	out := make([]Candidate, 0, len(w.instances)+1)
	for host, in := range w.instances {
		if host == self {
			continue
		}
		out = append(out, Candidate{
			Host: host, Healthy: in.GetHealth() == pb.Health_HEALTH_PASSING,
			Freshness: in.GetFreshness(), Priority: in.GetPriority(),
			NoFailover: slices.Contains(in.GetTags(), registry.NoFailoverTag),
		})
	}
	out = append(out, Candidate{Host: self, Healthy: local.Healthy, Freshness: local.Freshness, Priority: priority, NoFailover: local.NoFailover})
	slices.SortFunc(out, func(a, b Candidate) int { return strings.Compare(a.Host, b.Host) })
	return out
}
