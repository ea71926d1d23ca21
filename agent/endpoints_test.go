package agent_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/agent"
	"github.com/understudy-dev/understudy/agent/demoservice"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// noticeWithin is how soon the agent must leave an unresponsive member: the
// prober's interval plus its timeout (1.5 s), with room for a busy machine.
const noticeWithin = 2500 * time.Millisecond

// An etcd member that stops answering (its proxy blackholed: to a client
// exactly like a frozen process, connection open, nothing coming back) is
// left within the probe bound, for each of the three members in turn. The
// primary keeps its role: renewals answered after the cut extend the lease
// before the old deadline's fence point. A health change still reaches
// etcd, and the elector's watch still sees a change to its leader key. Once
// the member answers again, it is used again.
func TestUnresponsiveMemberIsLeft(t *testing.T) {
	const ttl = 5 * time.Second
	c := servertest.StartCluster(t, 3)
	var proxies []*servertest.Proxy
	var urls []string
	for i := range 3 {
		p := servertest.NewProxy(t, memberAddr(c, i))
		proxies = append(proxies, p)
		urls = append(urls, p.URL())
	}
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"db", "cache"}})
	cli := c.Client(t) // straight to the members, past the proxies
	a, cache := startTwoServiceAgent(t, urls, ttl)
	v := w.WaitView("db", 10*time.Second, "h1 primary", primaryIs("h1")).View
	w.WaitView("cache", 5*time.Second, "cache passing", passing(1))
	lease := a.CurrentLease()
	epoch := v.GetPrimary().GetEpoch()

	for i, p := range proxies {
		t.Run(fmt.Sprintf("m%d", i+1), func(t *testing.T) {
			fenceAt := lease.Deadline().Add(-ttl / 4)
			cut := time.Now()
			p.Blackhole()
			cache.Fail()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := cli.Delete(ctx, registry.LeaderKey("db")); err != nil {
				t.Fatal(err)
			}

			servertest.WaitUntil(t, noticeWithin, "the blackholed endpoint left", func() bool {
				return !slices.Contains(a.EtcdEndpoints(), p.URL())
			})
			t.Logf("endpoint left %v after the cut; client uses %v", time.Since(cut), a.EtcdEndpoints())

			// A renewal sent after the cut was answered, in time for the
			// primary never to reach its fence point.
			servertest.WaitUntil(t, time.Until(fenceAt), "a renewal sent after the cut", func() bool {
				return lease.Deadline().After(cut.Add(ttl))
			})
			t.Logf("renewed %v after the cut, %v before the fence point", time.Since(cut), time.Until(fenceAt))

			// A write and a watch event each wait at most for the member to
			// be left and one retry (the agent's 500 ms).
			got := w.WaitView("cache", noticeWithin+time.Second, "cache critical", func(v *pb.View) bool {
				return servertest.Instance(v, "h1").GetHealth() == pb.Health_HEALTH_CRITICAL
			})
			t.Logf("health change in etcd %v after the cut", got.At.Sub(cut))
			got = w.WaitView("db", noticeWithin+time.Second, "h1 primary again under a new epoch", func(v *pb.View) bool {
				return primaryIs("h1")(v) && v.GetPrimary().GetEpoch() > epoch
			})
			epoch = got.View.GetPrimary().GetEpoch()
			t.Logf("leader key deletion seen and the role taken again %v after the cut", got.At.Sub(cut))

			if err := cache.Heal(); err != nil {
				t.Fatal(err)
			}
			w.WaitView("cache", 5*time.Second, "cache passing again", passing(1))
			p.Heal()
			healed := time.Now()
			// The probe's own connection may be mid-handshake with the
			// member when it comes back: allow a connect timeout.
			servertest.WaitUntil(t, 10*time.Second, "the endpoint back", func() bool {
				return slices.Contains(a.EtcdEndpoints(), p.URL())
			})
			t.Logf("endpoint back %v after the heal", time.Since(healed))
			if a.CurrentLease() != lease {
				t.Fatalf("the agent replaced its lease")
			}
		})
	}
}

// startTwoServiceAgent runs host h1 with a primary-mode "db" and a pool
// "cache", each on its own demo service; it returns the agent and the
// cache's service.
func startTwoServiceAgent(t *testing.T, endpoints []string, ttl time.Duration) (*agent.Agent, *demoservice.Service) {
	t.Helper()
	rise, fall := 1, 1
	check := agent.CheckConfig{TCP: "self", Interval: agent.D(50 * time.Millisecond), Timeout: agent.D(50 * time.Millisecond), Rise: &rise, Fall: &fall}
	var svcs []*demoservice.Service
	for _, name := range []string{"db", "cache"} {
		svc, err := demoservice.Start(name, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		svcs = append(svcs, svc)
	}
	cfg := &agent.Config{
		Host: "h1", Zone: "z1", EtcdEndpoints: endpoints, TTL: agent.D(ttl), HTTPAddr: "off",
		ElectionStep: agent.D(50 * time.Millisecond),
		Services: []agent.ServiceConfig{
			{Name: "db", Mode: agent.ModePrimary, Address: svcs[0].Addr(), Check: check, Hooks: agent.HooksConfig{Demote: []string{"true"}}},
			{Name: "cache", Mode: agent.ModePool, Address: svcs[1].Addr(), Check: check},
		},
	}
	a, err := agent.New(cfg, agent.Options{Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, svcs[1]
}
