package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// events returns the events of db stored in etcd.
func events(t *testing.T, cli *clientv3.Client) []*pb.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, registry.EventsPrefix("db"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []*pb.Event
	for _, kv := range resp.Kvs {
		ev := &pb.Event{}
		if registry.Decode(kv.Value, ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

func waitStoredEvent(t *testing.T, cli *clientv3.Client, within time.Duration, kind pb.EventKind, host string) *pb.Event {
	t.Helper()
	var found *pb.Event
	servertest.WaitUntil(t, within, kind.String()+" event of "+host, func() bool {
		for _, ev := range events(t, cli) {
			if ev.GetKind() == kind && ev.GetHost() == host {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

// The only primary's check fails while no standby is healthy: it keeps the
// role, marked critical, and says so in an event, rather than demote into
// nothing; once a standby is healthy again it hands over.
func TestFailingCheckWithNobodyToTakeOverKeepsTheRole(t *testing.T) {
	r := newRig(t)
	const ttl = 3 * time.Second
	nodes, epoch := r.startRanked(t, ttl, spec{"h1", nodeOpts{priority: 2}}, spec{"h2", nodeOpts{priority: 1}})
	h1, h2 := nodes[0], nodes[1]

	h2.svc.Fail()
	r.w.WaitView("db", 2*ttl, "h2 critical", func(v *pb.View) bool {
		in := servertest.Instance(v, "h2")
		return in != nil && in.GetHealth() == pb.Health_HEALTH_CRITICAL
	})
	h1.svc.Fail()
	r.w.WaitView("db", 2*ttl, "h1 critical", func(v *pb.View) bool {
		in := servertest.Instance(v, "h1")
		return in != nil && in.GetHealth() == pb.Health_HEALTH_CRITICAL
	})
	ev := waitStoredEvent(t, r.cli, 2*ttl, pb.EventKind_EVENT_KIND_KEPT_ROLE, "h1")
	if !strings.Contains(ev.GetReason(), "no healthy eligible standby") {
		t.Errorf("kept-role event says %q", ev.GetReason())
	}
	hold(t, r.w, ttl, "h1 keeps the role", primaryIs("h1"), func() string {
		if !h1.agent.Acting("db") {
			return "h1 stopped acting"
		}
		return ""
	})

	if err := h2.svc.Heal(); err != nil {
		t.Fatal(err)
	}
	v := r.w.WaitView("db", 3*ttl, "h2 primary once healthy", primaryIs("h2")).View
	if v.GetPrimary().GetEpoch() <= epoch {
		t.Errorf("epoch %d after the handover, want > %d", v.GetPrimary().GetEpoch(), epoch)
	}
	assertNoOverlap(t, readHookLog(t, r.log))
}

// The high-water mark outlives the primary that set it: a standby that
// lags it by more than max_lag never takes over on its own, even as a
// freshly started agent that never saw that primary; an operator's forced
// switchover lets it, and is recorded.
func TestHighWaterMarkOutlivesThePrimary(t *testing.T) {
	r := newRig(t)
	const ttl = 3 * time.Second
	lag := int64(10)
	nodes, _ := r.startRanked(t, ttl,
		spec{"h1", nodeOpts{priority: 2, freshness: "200"}},
		spec{"h2", nodeOpts{priority: 1, freshness: "100", maxLag: &lag}})
	h1, h2 := nodes[0], nodes[1]
	servertest.WaitUntil(t, 2*ttl, "the mark at h1's freshness", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := r.cli.Get(ctx, registry.MarkKey("db"))
		var m pb.Mark
		return err == nil && len(resp.Kvs) == 1 && registry.Decode(resp.Kvs[0].Value, &m) == nil && m.GetFreshness() == 200 && m.GetHost() == "h1"
	})

	// h2's agent restarts with no memory of h1, then h1 goes away.
	h2.stop()
	h2 = startNode(t, "h2", r.c.Zones[1], nodeOpts{ttl: ttl, endpoints: r.c.Endpoints(), hookLog: r.log, priority: 1, freshness: "100", maxLag: &lag, svc: h2.svc})
	from := len(r.w.Messages())
	h1.stop()
	r.w.WaitView("db", 2*ttl, "no primary after h1 stopped", func(v *pb.View) bool { return v.GetPrimary() == nil })
	waitStoredEvent(t, r.cli, 2*ttl, pb.EventKind_EVENT_KIND_BLOCKED, "h2")
	hold(t, r.w, ttl, "h2 stays out", func(v *pb.View) bool { return v.GetPrimary() == nil }, func() string {
		if h2.agent.Acting("db") {
			return "h2 is acting"
		}
		return ""
	})
	neverPrimary(t, r.w, from, "h2")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.c.Registry(t, 0).Switchover(ctx, &pb.SwitchoverRequest{Service: "db", To: "h2", Force: true}); err != nil {
		t.Fatalf("forced switchover: %v", err)
	}
	r.w.WaitView("db", 3*ttl, "h2 primary once forced", primaryIs("h2"))
	waitStoredEvent(t, r.cli, 2*ttl, pb.EventKind_EVENT_KIND_FORCED, "h2")
	assertNoOverlap(t, readHookLog(t, r.log))
}
