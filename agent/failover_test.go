package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// The tests in this file are the rows of the failure-semantics table of the
// design that primary_test.go does not cover. Each starts its own cluster.

// spec is one node of a test: its host name and options. Empty endpoints,
// ttl and hookLog are filled in by startRanked.
type spec struct {
	name string
	o    nodeOpts
}

// rig is a cluster with a watcher on server 0, an etcd client, and a shared
// hook log.
type rig struct {
	c   *servertest.Cluster
	w   *servertest.Watcher
	cli *clientv3.Client
	log string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	c := servertest.StartCluster(t, 3)
	return &rig{
		c:   c,
		w:   servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"db"}}),
		cli: c.Client(t),
		log: filepath.Join(t.TempDir(), "hooks.log"),
	}
}

// startRanked starts the first node alone and waits until it is the
// primary, then starts the others and waits until all are registered and
// passing: which node is primary first never depends on who registered
// first. It returns the nodes and the first primary's epoch.
func (r *rig) startRanked(t *testing.T, ttl time.Duration, specs ...spec) ([]*node, int64) {
	t.Helper()
	start := func(i int) *node {
		s := specs[i]
		if s.o.ttl == 0 {
			s.o.ttl = ttl
		}
		if s.o.endpoints == nil {
			s.o.endpoints = r.c.Endpoints()
		}
		if s.o.hookLog == "" {
			s.o.hookLog = r.log
		}
		return startNode(t, s.name, r.c.Zones[i%len(r.c.Zones)], s.o)
	}
	nodes := []*node{start(0)}
	v := r.w.WaitView("db", 10*time.Second, specs[0].name+" primary", primaryIs(specs[0].name)).View
	var names []string
	for i := range specs {
		names = append(names, specs[i].name)
		if i > 0 {
			nodes = append(nodes, start(i))
		}
	}
	r.w.WaitView("db", 10*time.Second, "all registered and passing", allPassing(names...))
	return nodes, v.GetPrimary().GetEpoch()
}

// allPassing holds when every named host has a passing instance.
func allPassing(hosts ...string) func(*pb.View) bool {
	return func(v *pb.View) bool {
		for _, h := range hosts {
			if servertest.Instance(v, h).GetHealth() != pb.Health_HEALTH_PASSING {
				return false
			}
		}
		return true
	}
}

// readOnly holds when the view has no primary but serves reads.
func readOnly(v *pb.View) bool {
	return v.GetPrimary() == nil && v.GetStatus() == pb.Status_STATUS_READ_ONLY
}

func putControl(t *testing.T, cli *clientv3.Client, c *pb.Control) {
	t.Helper()
	b, err := registry.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, registry.ControlKey("db"), string(b)); err != nil {
		t.Fatalf("writing the control key: %v", err)
	}
}

func getControl(t *testing.T, cli *clientv3.Client) *pb.Control {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, registry.ControlKey("db"))
	if err != nil {
		t.Fatalf("reading the control key: %v", err)
	}
	c := &pb.Control{}
	if len(resp.Kvs) == 0 {
		return c
	}
	if err := registry.Decode(resp.Kvs[0].Value, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// dbViews returns every view of "db" that arrived from message index from
// on; a snapshot without "db" counts as an empty view.
func dbViews(w *servertest.Watcher, from int) []*pb.View {
	var out []*pb.View
	for _, m := range w.Messages()[from:] {
		found := false
		for _, v := range m.GetViews() {
			if v.GetService() == "db" {
				out, found = append(out, v), true
			}
		}
		if !found && m.GetSnapshot() {
			out = append(out, &pb.View{Service: "db"})
		}
	}
	return out
}

// neverPrimary fails if any view since message index from showed one of
// hosts as primary.
func neverPrimary(t *testing.T, w *servertest.Watcher, from int, hosts ...string) {
	t.Helper()
	for _, v := range dbViews(w, from) {
		if h := v.GetPrimary().GetHost(); slices.Contains(hosts, h) {
			t.Errorf("%s was primary (epoch %d) in view %s; it never should have been", h, v.GetPrimary().GetEpoch(), servertest.Describe(v))
		}
	}
}

// hold checks for d that every view arriving meanwhile, and the one current
// at the start, satisfy ok, and that also (if set) returns "" at every poll.
// Holding for a while is the assertion here, so this one waits.
func hold(t *testing.T, w *servertest.Watcher, d time.Duration, what string, ok func(*pb.View) bool, also func() string) {
	t.Helper()
	from := len(w.Messages())
	cur := w.WaitView("db", time.Second, "a view", func(*pb.View) bool { return true }).View
	if !ok(cur) {
		t.Fatalf("%s: does not hold at the start: %s", what, servertest.Describe(cur))
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); <-tick.C {
		if also == nil {
			continue
		}
		if msg := also(); msg != "" {
			t.Fatalf("%s: %s", what, msg)
		}
	}
	for _, v := range dbViews(w, from) {
		if !ok(v) {
			t.Fatalf("%s: broken by view %s (primary %v)", what, servertest.Describe(v), v.GetPrimary())
		}
	}
}

// hookLine is one line of the shared hook log.
type hookLine struct {
	ts          int64
	phase, hook string
	host        string
	epoch       int64
}

func (l hookLine) String() string {
	return fmt.Sprintf("%s %s %s@%d", l.phase, l.hook, l.host, l.epoch)
}

// readHookLines returns the hook log's lines; an absent log has none.
func readHookLines(t *testing.T, path string) []hookLine {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("hook log: %v", err)
	}
	defer f.Close()
	var out []hookLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l hookLine
		if _, err := fmt.Sscanf(sc.Text(), "%d %s %s %s %d", &l.ts, &l.phase, &l.hook, &l.host, &l.epoch); err != nil {
			t.Fatalf("hook log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// hooksOf returns the lines of hook run by host, in log order.
func hooksOf(lines []hookLine, hook, host string) []hookLine {
	var out []hookLine
	for _, l := range lines {
		if l.hook == hook && l.host == host {
			out = append(out, l)
		}
	}
	return out
}

// A switchover naming a target hands the role to that target, not to the
// better-ranked standby; the new primary clears the request.
func TestSwitchoverToTarget(t *testing.T) {
	r := newRig(t)
	nodes, epoch1 := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3}}, spec{"h2", nodeOpts{priority: 2}}, spec{"h3", nodeOpts{priority: 1}})
	from := len(r.w.Messages())

	start := time.Now()
	putControl(t, r.cli, &pb.Control{SwitchoverFrom: "h1", SwitchoverTo: "h3", RequestedAt: timestamppb.Now()})
	got := r.w.WaitView("db", 5*time.Second, "h3 primary", primaryIs("h3"))
	t.Logf("h3 primary %v after the switchover request", got.At.Sub(start))
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch1 {
		t.Errorf("epoch %d after the switchover, want > %d", e, epoch1)
	}
	neverPrimary(t, r.w, from, "h2")
	if c := getControl(t, r.cli); c.GetSwitchoverFrom() != "" || c.GetSwitchoverTo() != "" || c.GetPaused() {
		t.Errorf("control after the switchover = %v, want the request cleared (and not paused)", c)
	}
	if code := nodes[0].endpoint(t, "/primary/db"); code != http.StatusServiceUnavailable {
		t.Errorf("old primary h1 /primary/db = %d, want 503", code)
	}
	nodes[2].waitEndpoint(t, "/primary/db", http.StatusOK)
	assertNoOverlap(t, readHookLog(t, r.log))
}

// A switchover without a target hands the role to the best-ranked standby,
// and the old primary does not take it back.
func TestSwitchoverToBestStandby(t *testing.T) {
	r := newRig(t)
	nodes, epoch1 := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3}}, spec{"h2", nodeOpts{priority: 2}}, spec{"h3", nodeOpts{priority: 1}})
	from := len(r.w.Messages())

	start := time.Now()
	putControl(t, r.cli, &pb.Control{SwitchoverFrom: "h1", RequestedAt: timestamppb.Now()})
	got := r.w.WaitView("db", 5*time.Second, "h2 primary", primaryIs("h2"))
	t.Logf("h2 primary %v after the switchover request", got.At.Sub(start))
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch1 {
		t.Errorf("epoch %d after the switchover, want > %d", e, epoch1)
	}
	neverPrimary(t, r.w, from, "h3")
	// h1 is healthy and ranked first, but there is no failback.
	hold(t, r.w, 1500*time.Millisecond, "h2 stays primary", primaryIs("h2"), func() string {
		if nodes[0].agent.Acting("db") {
			return "h1 is acting as primary again"
		}
		return ""
	})
	if c := getControl(t, r.cli); c.GetSwitchoverFrom() != "" {
		t.Errorf("control after the switchover = %v, want the request cleared", c)
	}
	assertNoOverlap(t, readHookLog(t, r.log))
}

// While paused no agent promotes, demotes or resigns on its own: a failing
// primary keeps the role. A graceful stop is the operator's own action and
// still resigns, but nobody takes over until the pause ends.
func TestPauseHoldsFailover(t *testing.T) {
	r := newRig(t)
	nodes, epoch1 := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3}}, spec{"h2", nodeOpts{priority: 2}}, spec{"h3", nodeOpts{priority: 1}})
	h1, h2, h3 := nodes[0], nodes[1], nodes[2]

	putControl(t, r.cli, &pb.Control{Paused: true})
	r.w.WaitView("db", 5*time.Second, "paused", func(v *pb.View) bool { return v.GetPaused() })
	h1.svc.Fail()
	r.w.WaitView("db", 5*time.Second, "h1 critical", func(v *pb.View) bool {
		return servertest.Instance(v, "h1").GetHealth() == pb.Health_HEALTH_CRITICAL
	})
	hold(t, r.w, 1500*time.Millisecond, "paused: failing h1 keeps the role", primaryIs("h1"), func() string {
		if got := h1.endpoint(t, "/primary/db"); got != http.StatusOK {
			return fmt.Sprintf("h1 /primary/db = %d, want 200", got)
		}
		if d := hooksOf(readHookLines(t, r.log), "demote", "h1"); len(d) > 0 {
			return fmt.Sprintf("h1 ran its demote hook while paused: %v", d)
		}
		return ""
	})

	start := time.Now()
	putControl(t, r.cli, &pb.Control{Paused: false})
	got := r.w.WaitView("db", 5*time.Second, "h2 primary after resume", primaryIs("h2"))
	t.Logf("resumed: failing h1 handed over to h2 in %v", got.At.Sub(start))
	epoch2 := got.View.GetPrimary().GetEpoch()
	if epoch2 <= epoch1 {
		t.Errorf("epoch %d after resume, want > %d", epoch2, epoch1)
	}
	if got := h1.endpoint(t, "/primary/db"); got != http.StatusServiceUnavailable {
		t.Errorf("h1 /primary/db after resume = %d, want 503", got)
	}

	// Paused again, the primary is stopped gracefully. What we observe: it
	// resigns (stopping is the operator's action), and no standby promotes.
	putControl(t, r.cli, &pb.Control{Paused: true})
	r.w.WaitView("db", 5*time.Second, "paused again", func(v *pb.View) bool { return v.GetPaused() })
	from := len(r.w.Messages())
	h2.stop()
	ro := r.w.WaitView("db", 5*time.Second, "READ_ONLY after h2 stopped", readOnly)
	t.Logf("paused, h2 stopped gracefully: it resigned; view %s", servertest.Describe(ro.View))
	hold(t, r.w, 1500*time.Millisecond, "paused: nobody promotes", readOnly, func() string {
		if h3.agent.Acting("db") {
			return "h3 is acting as primary while paused"
		}
		return ""
	})
	neverPrimary(t, r.w, from, "h1", "h3")

	start = time.Now()
	putControl(t, r.cli, &pb.Control{Paused: false})
	got = r.w.WaitView("db", 5*time.Second, "h3 primary after resume", primaryIs("h3"))
	t.Logf("resumed: h3 took over in %v", got.At.Sub(start))
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch2 {
		t.Errorf("epoch %d after the second resume, want > %d", e, epoch2)
	}
	assertNoOverlap(t, readHookLog(t, r.log))
}

// A standby lagging by more than max_lag never promotes: the fresher
// standby takes over, and when it is gone too the service stays READ_ONLY.
func TestMaxLagKeepsLaggingStandbyOut(t *testing.T) {
	r := newRig(t)
	lag := int64(10)
	nodes, _ := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3, freshness: "200"}},
		spec{"h2", nodeOpts{priority: 2, freshness: "100", maxLag: &lag}},
		spec{"h3", nodeOpts{priority: 1, freshness: "200"}})
	h1, h2, h3 := nodes[0], nodes[1], nodes[2]
	from := len(r.w.Messages())

	h1.svc.Fail()
	r.w.WaitView("db", 5*time.Second, "h3 primary", primaryIs("h3"))
	h3.stop()
	r.w.WaitView("db", 5*time.Second, "READ_ONLY after h3 stopped", readOnly)
	hold(t, r.w, 1500*time.Millisecond, "lagging h2 never promotes", readOnly, func() string {
		if h2.agent.Acting("db") {
			return "h2 is acting as primary"
		}
		return ""
	})
	neverPrimary(t, r.w, from, "h2")
	if got := h2.endpoint(t, "/primary/db"); got != http.StatusServiceUnavailable {
		t.Errorf("h2 /primary/db = %d, want 503", got)
	}
	assertNoOverlap(t, readHookLog(t, r.log))
}

// A standby tagged nofailover never promotes, even when it has the best
// priority.
func TestNoFailoverTagNeverPromotes(t *testing.T) {
	r := newRig(t)
	nodes, _ := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3}},
		spec{"h2", nodeOpts{priority: 2, tags: []string{"nofailover"}}},
		spec{"h3", nodeOpts{priority: 1}})
	h1, h2, h3 := nodes[0], nodes[1], nodes[2]
	from := len(r.w.Messages())

	h1.svc.Fail()
	r.w.WaitView("db", 5*time.Second, "h3 primary", primaryIs("h3"))
	h3.stop()
	r.w.WaitView("db", 5*time.Second, "READ_ONLY after h3 stopped", readOnly)
	hold(t, r.w, time.Second, "nofailover h2 never promotes", readOnly, func() string {
		if h2.agent.Acting("db") {
			return "h2 is acting as primary"
		}
		return ""
	})
	neverPrimary(t, r.w, from, "h2")
	assertNoOverlap(t, readHookLog(t, r.log))
}

// Freshness ranks before priority: the fresher standby takes over.
func TestFresherStandbyWinsOverHigherPriority(t *testing.T) {
	r := newRig(t)
	nodes, epoch1 := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3, freshness: "100"}},
		spec{"h2", nodeOpts{priority: 2, freshness: "50"}},
		spec{"h3", nodeOpts{priority: 1, freshness: "100"}})
	from := len(r.w.Messages())

	nodes[0].svc.Fail()
	got := r.w.WaitView("db", 5*time.Second, "h3 primary", primaryIs("h3"))
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch1 {
		t.Errorf("epoch %d after failover, want > %d", e, epoch1)
	}
	neverPrimary(t, r.w, from, "h2")
	assertNoOverlap(t, readHookLog(t, r.log))
}

// A candidate whose promote hook fails gives the role up and stays a
// standby; the next candidate becomes primary.
func TestFailingPromoteHookPassesTheRoleOn(t *testing.T) {
	r := newRig(t)
	nodes, epoch1 := r.startRanked(t, 5*time.Second,
		spec{"h1", nodeOpts{priority: 3}},
		spec{"h2", nodeOpts{priority: 2, promote: []string{"false"}}},
		spec{"h3", nodeOpts{priority: 1}})
	h1, h2 := nodes[0], nodes[1]
	from := len(r.w.Messages())

	// Watch h2's role endpoint throughout the failover.
	stop := make(chan struct{})
	polled := make(chan []int)
	go func() {
		var bad []int
		for {
			select {
			case <-stop:
				polled <- bad
				return
			default:
			}
			resp, err := http.Get("http://" + h2.agent.HTTPAddr() + "/primary/db")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					bad = append(bad, resp.StatusCode)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	start := time.Now()
	h1.svc.Fail()
	got := r.w.WaitView("db", 10*time.Second, "h3 primary", primaryIs("h3"))
	t.Logf("h3 primary %v after h1 failed (h2's promote failed in between)", got.At.Sub(start))
	close(stop)
	if bad := <-polled; len(bad) > 0 {
		t.Errorf("h2 /primary/db answered %v during the failover, want only 503", bad)
	}
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch1 {
		t.Errorf("epoch %d after failover, want > %d", e, epoch1)
	}
	neverPrimary(t, r.w, from, "h2")
	if h2.agent.Acting("db") {
		t.Error("h2 is acting as primary")
	}
	if got := h2.endpoint(t, "/replica/db"); got != http.StatusOK {
		t.Errorf("h2 /replica/db = %d, want 200 (a healthy standby)", got)
	}
	// h2 won the leader key (a demote hook ran for that epoch), and the
	// failure is in the history.
	lines := readHookLines(t, r.log)
	if d := hooksOf(lines, "demote", "h2"); len(d) == 0 {
		t.Errorf("h2 ran no demote hook after its failed promote; hook log: %v", lines)
	}
	waitEvent(t, r.cli, pb.EventKind_EVENT_KIND_PROMOTE_FAILED, "h2")
	assertNoOverlap(t, readHookLog(t, r.log))
}

// waitEvent waits until the history of "db" holds an event of kind by host.
func waitEvent(t *testing.T, cli *clientv3.Client, kind pb.EventKind, host string) {
	t.Helper()
	servertest.WaitUntil(t, 5*time.Second, fmt.Sprintf("a %v event of %s", kind, host), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, registry.EventsPrefix("db"), clientv3.WithPrefix())
		if err != nil {
			return false
		}
		for _, kv := range resp.Kvs {
			ev := &pb.Event{}
			if registry.Decode(kv.Value, ev) == nil && ev.GetKind() == kind && ev.GetHost() == host {
				return true
			}
		}
		return false
	})
}

// stopCutOff cuts n off from etcd for good (its proxy closes) and then
// stops its agent gracefully: its resign and revoke cannot reach etcd, so
// its keys stay behind under its lease. It returns how long the stop took.
func stopCutOff(n *node, p *servertest.Proxy) time.Duration {
	start := time.Now()
	p.Close()
	n.stop()
	return time.Since(start)
}

// crash makes n look crashed: cut off and stopped like stopCutOff, with the
// state file left as a killed agent leaves it (a graceful stop may remove
// it). Give the node a no-op demote hook so its service sees no demotion.
// n's promotion must be in the history first: an event write still in
// flight would make the stop wait for it, and a restart come later.
func crash(t *testing.T, n *node, p *servertest.Proxy, stateFile string) time.Duration {
	t.Helper()
	state, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatalf("state file before the crash: %v", err)
	}
	took := stopCutOff(n, p)
	if err := os.WriteFile(stateFile, state, 0o600); err != nil {
		t.Fatal(err)
	}
	return took
}

func memberAddr(c *servertest.Cluster, i int) string {
	return strings.TrimPrefix(c.Servers[i].Member().ClientURLs()[0], "http://")
}

// An agent restarted within the TTL resumes its lease and keeps the primary
// role with the same epoch; nobody else is promoted meanwhile.
func TestRestartWithinTTLKeepsRole(t *testing.T) {
	const ttl = 10 * time.Second
	r := newRig(t)
	proxy := servertest.NewProxy(t, memberAddr(r.c, 0))
	state := filepath.Join(t.TempDir(), "h1.state")
	nodes, epoch := r.startRanked(t, ttl,
		spec{"h1", nodeOpts{priority: 3, endpoints: []string{proxy.URL()}, stateFile: state, demote: []string{"true"}}},
		spec{"h2", nodeOpts{priority: 2}})
	h1 := nodes[0]
	from := len(r.w.Messages())

	waitEvent(t, r.cli, pb.EventKind_EVENT_KIND_PROMOTED, "h1")
	took := crash(t, h1, proxy, state)
	t.Logf("h1 crashed (stop with etcd unreachable took %v)", took)
	h1b := startNode(t, "h1", r.c.Zones[0], nodeOpts{
		ttl: ttl, endpoints: r.c.Endpoints(), priority: 3, hookLog: r.log, stateFile: state, svc: h1.svc,
	})
	servertest.WaitUntil(t, 5*time.Second, "restarted h1 acting", func() bool { return h1b.agent.Acting("db") })
	if got := h1b.endpoint(t, "/primary/db"); got != http.StatusOK {
		t.Errorf("restarted h1 /primary/db = %d, want 200", got)
	}
	cur := r.w.WaitView("db", 5*time.Second, "h1 primary", primaryIs("h1")).View
	if e := cur.GetPrimary().GetEpoch(); e != epoch {
		t.Errorf("epoch after the restart = %d, want the same %d", e, epoch)
	}
	for _, v := range dbViews(r.w, from) {
		if p := v.GetPrimary(); p.GetHost() != "h1" || p.GetEpoch() != epoch {
			t.Errorf("view during the restart: primary %v, want h1 at epoch %d throughout", p, epoch)
		}
	}
	lines := readHookLines(t, r.log)
	if p := hooksOf(lines, "promote", "h2"); len(p) > 0 {
		t.Errorf("h2 ran its promote hook: %v", p)
	}
	if p := hooksOf(lines, "promote", "h1"); len(p) != 2 { // start and end, once
		t.Errorf("h1 promote hook lines %v, want one run: its service never stopped being primary", p)
	}
}

// An agent stopped gracefully while etcd is unreachable runs its demote
// hook but cannot delete its keys or revoke its lease. Restarted within the
// TTL, it must not act as primary of a service its last hook demoted: it
// either runs the promote hook again or does not resume the role.
func TestRestartAfterUnreachableStopDoesNotActDemoted(t *testing.T) {
	const ttl = 10 * time.Second
	r := newRig(t)
	proxy := servertest.NewProxy(t, memberAddr(r.c, 0))
	state := filepath.Join(t.TempDir(), "h1.state")
	nodes, _ := r.startRanked(t, ttl,
		spec{"h1", nodeOpts{priority: 3, endpoints: []string{proxy.URL()}, stateFile: state}},
		spec{"h2", nodeOpts{priority: 2}})
	h1 := nodes[0]

	stopCutOff(h1, proxy)
	if d := hooksOf(readHookLines(t, r.log), "demote", "h1"); len(d) == 0 {
		t.Fatal("h1's stop ran no demote hook; this test needs one")
	}
	h1b := startNode(t, "h1", r.c.Zones[0], nodeOpts{
		ttl: ttl, endpoints: r.c.Endpoints(), priority: 3, hookLog: r.log, stateFile: state, svc: h1.svc,
	})
	// Give the restarted agent time to resume (it does within milliseconds).
	deadline := time.Now().Add(3 * time.Second)
	for !h1b.agent.Acting("db") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !h1b.agent.Acting("db") {
		return // not resumed: consistent with the demote hook
	}
	// Acting: the service must have been told so after its demotion.
	var last hookLine
	for _, l := range readHookLines(t, r.log) {
		if l.host == "h1" {
			last = l
		}
	}
	if last.hook != "promote" || last.phase != "end" {
		t.Errorf("restarted h1 acts as primary (/primary/db = %d) but the last hook it ran is %v: the service was demoted and never promoted again",
			h1b.endpoint(t, "/primary/db"), last)
	}
}

// A restart after the lease expired cannot resume it: the role is taken
// anew, with a new epoch.
func TestRestartAfterTTLStartsNewTerm(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t)
	proxy := servertest.NewProxy(t, memberAddr(r.c, 0))
	state := filepath.Join(t.TempDir(), "h1.state")
	nodes, epoch := r.startRanked(t, ttl, spec{"h1", nodeOpts{priority: 3, endpoints: []string{proxy.URL()}, stateFile: state, demote: []string{"true"}}})
	h1 := nodes[0]

	waitEvent(t, r.cli, pb.EventKind_EVENT_KIND_PROMOTED, "h1")
	took := crash(t, h1, proxy, state)
	t.Logf("h1 crashed (stop with etcd unreachable took %v)", took)
	r.w.WaitView("db", ttl+3*time.Second, "h1's lease expired", func(v *pb.View) bool {
		return v.GetPrimary() == nil && servertest.Instance(v, "h1") == nil
	})
	startNode(t, "h1", r.c.Zones[0], nodeOpts{ttl: ttl, endpoints: r.c.Endpoints(), priority: 3, hookLog: r.log, stateFile: state, svc: h1.svc})
	got := r.w.WaitView("db", 10*time.Second, "h1 primary again", primaryIs("h1")).View
	if e := got.GetPrimary().GetEpoch(); e <= epoch {
		t.Errorf("epoch after a restart past the TTL = %d, want > %d", e, epoch)
	}
}

// Losing one etcd member (the raft leader, moved off the member the watcher
// uses) changes nothing for the primary: same host, same epoch, for more
// than a TTL.
func TestEtcdMemberLossKeepsPrimary(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t)
	nodes, epoch := r.startRanked(t, ttl, spec{"h1", nodeOpts{priority: 3}}, spec{"h2", nodeOpts{priority: 2}})

	victim := 2
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := make([]uint64, len(r.c.Servers))
	leader := uint64(0)
	for i := range r.c.Servers {
		st, err := r.cli.Status(ctx, r.c.Servers[i].Member().ClientURLs()[0])
		if err != nil {
			t.Fatalf("status of member %d: %v", i, err)
		}
		ids[i], leader = st.Header.GetMemberId(), st.Leader
	}
	if li := slices.Index(ids, leader); li != victim {
		// Make the member to lose the raft leader: the harder case.
		lcli := servertest.NewClient(t, r.c.Servers[li].Member().ClientURLs()[0])
		if _, err := lcli.MoveLeader(ctx, ids[victim]); err != nil {
			t.Fatalf("moving the raft leader to member %d: %v", victim, err)
		}
	}
	from := len(r.w.Messages())
	r.c.Stop(victim)
	t.Logf("stopped etcd member %d (the raft leader)", victim)
	hold(t, r.w, 2*ttl+time.Second, "primary unchanged", func(v *pb.View) bool {
		return primaryIs("h1")(v) && v.GetPrimary().GetEpoch() == epoch
	}, func() string {
		if !nodes[0].agent.Acting("db") {
			return "h1 stopped acting"
		}
		return ""
	})
	if n := len(dbViews(r.w, from)); n > 0 {
		t.Logf("%d view changes meanwhile, all with h1 at epoch %d", n, epoch)
	}
	if lines := readHookLines(t, r.log); len(lines) != 2 {
		t.Errorf("hook log %v, want only h1's first promote", lines)
	}
}

// A primary whose agent is gone (its connection to etcd closes for good,
// its service stays up) loses the role when its lease expires: the standby
// is promoted within TTL + 2s.
func TestCrashedAgentLosesRoleAfterTTL(t *testing.T) {
	const ttl = 2 * time.Second
	r := newRig(t)
	proxy := servertest.NewProxy(t, memberAddr(r.c, 0))
	nodes, epoch := r.startRanked(t, ttl,
		spec{"h1", nodeOpts{priority: 3, endpoints: []string{proxy.URL()}}}, spec{"h2", nodeOpts{priority: 2}})

	start := time.Now()
	proxy.Close()
	got := r.w.WaitView("db", ttl+2*time.Second, "h2 primary", primaryIs("h2"))
	took := got.At.Sub(start)
	t.Logf("h2 primary %v after h1's agent was cut off (TTL %v, %+.2fs relative to the TTL)", took, ttl, (took - ttl).Seconds())
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch {
		t.Errorf("epoch %d after failover, want > %d", e, epoch)
	}
	if nodes[0].svc.Healthy() != true {
		t.Error("h1's service went down; it should have stayed up")
	}
	if nodes[0].agent.Acting("db") {
		t.Error("cut-off h1 is still acting")
	}
	assertNoOverlap(t, readHookLog(t, r.log))
}
