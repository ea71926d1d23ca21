package agent_test

import (
	"fmt"
	"testing"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// A plain HTTP client on the registry's /v1/watch event stream follows a
// failover between real agents: the primary's check fails, it resigns, and
// the stream shows the other host promoted with a higher epoch.
func TestEventStreamFollowsAgentFailover(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	nodes := map[string]*node{}
	for i, prio := range []int32{2, 1} {
		name := fmt.Sprintf("h%d", i+1)
		nodes[name] = startNode(t, name, c.Zones[0], nodeOpts{ttl: 5 * time.Second, endpoints: c.Endpoints(), priority: prio})
	}
	s := servertest.GetEvents(t, "http://"+c.Servers[0].HTTPAddr()+"/v1/watch?service=db", nil)
	// Usually h1 (higher priority), but h2 wins when it is healthy first.
	v, _ := s.WaitView("db", 20*time.Second, "a primary", func(v *pb.View) bool {
		return v.GetStatus() == pb.Status_STATUS_READ_WRITE && len(v.GetInstances()) == 2
	})
	first, epoch := v.GetPrimary().GetHost(), v.GetPrimary().GetEpoch()
	other := map[string]string{"h1": "h2", "h2": "h1"}[first]

	failed := time.Now()
	nodes[first].svc.Fail()
	v, ev := s.WaitView("db", 10*time.Second, other+" primary", primaryIs(other))
	t.Logf("event %s (id %s) showed %s primary %v after %s's service failed", ev.Type, ev.ID, other, ev.At.Sub(failed), first)
	if v.GetPrimary().GetEpoch() <= epoch {
		t.Errorf("epoch %d after failover, want > %d", v.GetPrimary().GetEpoch(), epoch)
	}
	if in := servertest.Instance(v, first); in != nil && in.GetHealth() != pb.Health_HEALTH_CRITICAL {
		t.Errorf("%s %v in the view with %s primary, want critical or gone", first, in.GetHealth(), other)
	}
}
