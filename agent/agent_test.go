package agent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/agent"
	"github.com/understudy-dev/understudy/agent/demoservice"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }

// host is one agent with one demo TCP service registered in pool "cache".
type host struct {
	name    string
	svc     *demoservice.Service
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once
}

type hostOpts struct {
	ttl       time.Duration
	endpoints []string
}

func startHost(t *testing.T, name, zone string, o hostOpts) *host {
	t.Helper()
	svc, err := demoservice.Start(name, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	rise, fall := 1, 1
	cfg := &agent.Config{
		Host: name, Zone: zone, EtcdEndpoints: o.endpoints, TTL: agent.D(o.ttl), HTTPAddr: "127.0.0.1:0",
		Services: []agent.ServiceConfig{{
			Name: "cache", Mode: agent.ModePool, Address: svc.Addr(), Tags: []string{"demo"},
			Check: agent.CheckConfig{TCP: "self", Interval: agent.D(50 * time.Millisecond), Timeout: agent.D(50 * time.Millisecond), Rise: &rise, Fall: &fall},
		}},
	}
	a, err := agent.New(cfg, agent.Options{Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &host{name: name, svc: svc, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(h.done); _ = a.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop shuts the agent down gracefully and waits for it.
func (h *host) stop() {
	h.stopped.Do(func() { h.cancel(); <-h.done })
}

func passing(n int) func(*pb.View) bool {
	return func(v *pb.View) bool { return len(registryHealthy(v)) == n && len(v.GetInstances()) == n }
}

func registryHealthy(v *pb.View) []*pb.Instance {
	var out []*pb.Instance
	for _, in := range v.GetInstances() {
		if in.GetHealth() == pb.Health_HEALTH_PASSING {
			out = append(out, in)
		}
	}
	return out
}

func startPool(t *testing.T, c *servertest.Cluster, ttl time.Duration) []*host {
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, fmt.Sprintf("h%d", i+1), c.Zones[i], hostOpts{ttl: ttl, endpoints: c.Endpoints()}))
	}
	return hosts
}

// A subscriber gets the snapshot, sees a failing check turn an instance
// critical (still listed) and healthy again, and sees a gracefully stopped
// agent's instance vanish at once: the lease is revoked, not left to expire.
func TestPoolLifecycleOnWatch(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	const ttl = 10 * time.Second
	hosts := startPool(t, c, ttl)
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"cache"}})
	v := w.WaitView("cache", 10*time.Second, "three passing instances", passing(3)).View
	if v.GetStatus() != pb.Status_STATUS_READ_WRITE || v.GetMode() != pb.Mode_MODE_POOL {
		t.Fatalf("status/mode = %v/%v, want READ_WRITE/POOL", v.GetStatus(), v.GetMode())
	}
	for i, in := range v.GetInstances() {
		if in.GetZone() != c.Zones[i] || in.GetAddress() != hosts[i].svc.Addr() {
			t.Errorf("instance %d = %s zone %s addr %s, want zone %s addr %s", i, in.GetHost(), in.GetZone(), in.GetAddress(), c.Zones[i], hosts[i].svc.Addr())
		}
	}
	if first := w.Messages()[0]; !first.GetSnapshot() {
		t.Errorf("first message is not a snapshot: %v", first)
	}

	t.Run("failing check turns critical, stays listed", func(t *testing.T) {
		hosts[1].svc.Fail()
		v := w.WaitView("cache", 5*time.Second, "h2 critical", func(v *pb.View) bool {
			in := servertest.Instance(v, "h2")
			return in != nil && in.GetHealth() == pb.Health_HEALTH_CRITICAL
		}).View
		if len(v.GetInstances()) != 3 || v.GetStatus() != pb.Status_STATUS_READ_WRITE {
			t.Fatalf("after one failure: %s, want 3 instances, READ_WRITE", servertest.Describe(v))
		}
		if out := servertest.Instance(v, "h2").GetCheckOutput(); out == "" {
			t.Errorf("critical instance has no check output")
		}
		if err := hosts[1].svc.Heal(); err != nil {
			t.Fatal(err)
		}
		w.WaitView("cache", 5*time.Second, "h2 passing again", passing(3))
	})

	t.Run("graceful stop removes instances at once", func(t *testing.T) {
		start := time.Now()
		hosts[2].stop()
		got := w.WaitView("cache", ttl/2, "h3 gone", func(v *pb.View) bool { return servertest.Instance(v, "h3") == nil })
		t.Logf("h3 removed %v after its agent was told to stop (lease TTL %v)", got.At.Sub(start), ttl)
	})

	t.Run("every instance gone leaves the service DOWN then absent", func(t *testing.T) {
		hosts[0].stop()
		hosts[1].stop()
		v := w.WaitView("cache", ttl/2, "no instances", func(v *pb.View) bool { return len(v.GetInstances()) == 0 }).View
		if v.GetStatus() != pb.Status_STATUS_DOWN {
			t.Fatalf("empty view status %v, want DOWN", v.GetStatus())
		}
	})
}

// An agent whose keepalives stop reaching etcd loses its instances after the
// TTL (not before, not much after), and registers again under a new lease
// once it can reach etcd.
func TestKeepalivesStopInstancesExpireAfterTTL(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	const ttl = 2 * time.Second
	proxy := servertest.NewProxy(t, c.Servers[1].Member().ClientURLs()[0][len("http://"):])
	h := startHost(t, "cut", "z2", hostOpts{ttl: ttl, endpoints: []string{proxy.URL()}})
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"cache"}})
	w.WaitView("cache", 10*time.Second, "registered", passing(1))

	cut := time.Now()
	proxy.Blackhole()
	gone := w.WaitView("cache", ttl+5*time.Second, "expired", func(v *pb.View) bool { return len(v.GetInstances()) == 0 })
	after := gone.At.Sub(cut)
	t.Logf("instances removed %v after keepalives stopped (TTL %v)", after, ttl)
	// The last renewal before the cut was at most TTL/3 earlier, so the lease
	// cannot expire sooner than 2/3 of the TTL after the cut.
	if after < ttl*2/3 {
		t.Fatalf("removed after %v, before the lease could have expired (TTL %v)", after, ttl)
	}

	proxy.Heal()
	w.WaitView("cache", 15*time.Second, "re-registered after the partition healed", passing(1))
	_ = h
}

// Losing one etcd member of three changes nothing: no view update, no lost
// registration, even after more than a TTL.
func TestOneMemberStopChangesNothing(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	const ttl = 5 * time.Second
	startPool(t, c, ttl)
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"cache"}})
	before := w.WaitView("cache", 10*time.Second, "three passing", passing(3)).View
	n := len(w.Messages())

	c.Stop(2)
	// Nothing is supposed to happen, so the test waits out more than a TTL:
	// long enough for a lost lease to expire and show.
	time.Sleep(ttl + 2*time.Second)

	if msgs := w.Messages(); len(msgs) != n {
		t.Fatalf("views changed after a member stopped: %d new messages, last %s", len(msgs)-n, servertest.Describe(msgs[len(msgs)-1].GetViews()[0]))
	}
	after, err := c.Registry(t, 0).GetService(context.Background(), &pb.GetServiceRequest{Service: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	if after.GetView().GetRevision() != before.GetRevision() || len(registryHealthy(after.GetView())) != 3 {
		t.Fatalf("view after member stop = %s, want unchanged %s", servertest.Describe(after.GetView()), servertest.Describe(before))
	}
}
