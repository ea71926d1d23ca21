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
	"sync"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/agent"
	"github.com/understudy-dev/understudy/agent/demoservice"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// node is one host running an agent with a demo service in the
// primary-mode service "db".
type node struct {
	name    string
	svc     *demoservice.Service
	agent   *agent.Agent
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once
}

type nodeOpts struct {
	ttl       time.Duration
	endpoints []string
	priority  int32
	freshness string // printed by the freshness command; empty: none
	maxLag    *int64
	tags      []string
	hookLog   string // shared, timestamped hook log
	promote   []string
	demote    []string // replaces the demote hook, e.g. {"true"} so a stop looks like a crash to the service
	stateFile string
	svc       *demoservice.Service
}

// hookCmd appends "<unix nanos> <start|end> <hook> <host> <epoch>" lines to
// log around a short pause, so overlapping hooks would show.
func hookCmd(log, hook string) []string {
	line := func(phase string) string {
		return `echo "$(date +%s%N) ` + phase + " " + hook + ` $UNDERSTUDY_HOST $UNDERSTUDY_EPOCH" >> ` + log
	}
	return []string{"sh", "-c", line("start") + "; sleep 0.05; " + line("end")}
}

func startNode(t *testing.T, name, zone string, o nodeOpts) *node {
	t.Helper()
	svc := o.svc
	if svc == nil {
		var err error
		if svc, err = demoservice.Start(name, "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
	}
	rise, fall := 1, 1
	sc := agent.ServiceConfig{
		Name: "db", Mode: agent.ModePrimary, Address: svc.Addr(), Priority: o.priority, Tags: o.tags, MaxLag: o.maxLag,
		Check: agent.CheckConfig{TCP: "self", Interval: agent.D(50 * time.Millisecond), Timeout: agent.D(50 * time.Millisecond), Rise: &rise, Fall: &fall},
	}
	if o.hookLog != "" {
		sc.Hooks = agent.HooksConfig{Promote: hookCmd(o.hookLog, "promote"), Demote: hookCmd(o.hookLog, "demote")}
	}
	if o.promote != nil {
		sc.Hooks.Promote = o.promote
	}
	if o.demote != nil {
		sc.Hooks.Demote = o.demote
	}
	if len(sc.Hooks.Demote) == 0 {
		sc.Hooks.Demote = []string{"true"} // required: the guard runs it
	}
	if o.freshness != "" {
		sc.Freshness = []string{"echo", o.freshness}
	}
	cfg := &agent.Config{
		Host: name, Zone: zone, EtcdEndpoints: o.endpoints, TTL: agent.D(o.ttl), HTTPAddr: "127.0.0.1:0",
		ElectionStep: agent.D(50 * time.Millisecond), StateFile: o.stateFile,
		Services: []agent.ServiceConfig{sc},
	}
	a, err := agent.New(cfg, agent.Options{Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{name: name, svc: svc, agent: a, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); _ = a.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() { n.stopped.Do(func() { n.cancel(); <-n.done }) }

// endpoint returns the HTTP status of a role endpoint on n's agent.
func (n *node) endpoint(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + n.agent.HTTPAddr() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// waitEndpoint polls a role endpoint until it answers want. The primary
// record reaches watchers a moment before the agent's write returns and it
// starts answering 200: never the other way round.
func (n *node) waitEndpoint(t *testing.T, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := n.endpoint(t, path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s = %d, want %d", n.name, path, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func primaryIs(host string) func(*pb.View) bool {
	return func(v *pb.View) bool {
		return v.GetPrimary().GetHost() == host && v.GetStatus() == pb.Status_STATUS_READ_WRITE
	}
}

// hookSpan is one host's time acting as primary, per the hook log: from the
// start of its promote hook to the end of its demote hook.
type hookSpan struct {
	host       string
	epoch      int64
	start, end int64 // unix nanos; end 0 while still acting
}

// readHookLog parses the shared hook log into acting spans.
func readHookLog(t *testing.T, path string) []hookSpan {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("hook log: %v", err)
	}
	defer f.Close()
	var spans []hookSpan
	open := map[string]int{} // host → index of its open span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ts int64
		var phase, hook, host string
		var epoch int64
		if _, err := fmt.Sscanf(sc.Text(), "%d %s %s %s %d", &ts, &phase, &hook, &host, &epoch); err != nil {
			t.Fatalf("hook log line %q: %v", sc.Text(), err)
		}
		switch {
		case hook == "promote" && phase == "start":
			open[host] = len(spans)
			spans = append(spans, hookSpan{host: host, epoch: epoch, start: ts})
		case hook == "demote" && phase == "end":
			if i, ok := open[host]; ok {
				spans[i].end = ts
				delete(open, host)
			}
		}
	}
	return spans
}

// assertNoOverlap fails if two hosts were acting as primary at once: every
// demote hook must have finished before the next promote hook started.
func assertNoOverlap(t *testing.T, spans []hookSpan) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("spans: %+v", spans)
		}
	}()
	slices.SortFunc(spans, func(a, b hookSpan) int { return int(a.start - b.start) })
	for i := 1; i < len(spans); i++ {
		prev, cur := spans[i-1], spans[i]
		if prev.end == 0 || prev.end > cur.start {
			t.Errorf("%s (epoch %d) promote started at %d while %s (epoch %d) had not finished demoting (end %d)",
				cur.host, cur.epoch, cur.start, prev.host, prev.epoch, prev.end)
		}
		if cur.epoch <= prev.epoch {
			t.Errorf("epoch did not increase: %s %d after %s %d", cur.host, cur.epoch, prev.host, prev.epoch)
		}
	}
}

// A primary whose check fails runs its demote hook and resigns; the best
// standby (by priority) is promoted at once, and the hooks never overlap.
func TestCheckFailureHandsOverToBestStandby(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	log := filepath.Join(t.TempDir(), "hooks.log")
	// h1 starts alone so it is the first primary: whoever registers first
	// wins a free role, whatever its rank.
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"db"}})
	nodes := []*node{startNode(t, "h1", c.Zones[0], nodeOpts{ttl: 5 * time.Second, endpoints: c.Endpoints(), priority: 3, hookLog: log})}
	w.WaitView("db", 10*time.Second, "h1 primary", primaryIs("h1"))
	for i, prio := range []int32{2, 1} {
		nodes = append(nodes, startNode(t, fmt.Sprintf("h%d", i+2), c.Zones[i+1], nodeOpts{ttl: 5 * time.Second, endpoints: c.Endpoints(), priority: prio, hookLog: log}))
	}
	v := w.WaitView("db", 10*time.Second, "h1 primary with two standbys", func(v *pb.View) bool {
		return primaryIs("h1")(v) && len(v.GetInstances()) == 3
	}).View
	for _, in := range v.GetInstances() {
		want := pb.Role_ROLE_STANDBY
		if in.GetHost() == "h1" {
			want = pb.Role_ROLE_PRIMARY
		}
		if in.GetRole() != want {
			t.Errorf("%s role %v, want %v", in.GetHost(), in.GetRole(), want)
		}
	}
	nodes[0].waitEndpoint(t, "/primary/db", http.StatusOK)
	if got := nodes[1].endpoint(t, "/primary/db"); got != http.StatusServiceUnavailable {
		t.Errorf("h2 /primary/db = %d, want 503", got)
	}
	if got := nodes[1].endpoint(t, "/replica/db"); got != http.StatusOK {
		t.Errorf("h2 /replica/db = %d, want 200", got)
	}
	epoch1 := v.GetPrimary().GetEpoch()

	nodes[0].svc.Fail()
	critical := w.WaitView("db", 5*time.Second, "h1 critical or replaced", func(v *pb.View) bool {
		return servertest.Instance(v, "h1").GetHealth() == pb.Health_HEALTH_CRITICAL || v.GetPrimary().GetHost() != "h1"
	})
	got := w.WaitView("db", 5*time.Second, "h2 primary", primaryIs("h2"))
	t.Logf("new primary seen %v after the old one was seen failing", got.At.Sub(critical.At))
	if e := got.View.GetPrimary().GetEpoch(); e <= epoch1 {
		t.Errorf("epoch %d after failover, want > %d", e, epoch1)
	}
	if code := nodes[0].endpoint(t, "/primary/db"); code != http.StatusServiceUnavailable {
		t.Errorf("failed h1 /primary/db = %d, want 503", code)
	}
	assertNoOverlap(t, readHookLog(t, log))
}

// A primary stopped gracefully (SIGTERM) demotes and resigns: a standby
// takes over at once, not after the TTL.
func TestGracefulStopHandsOver(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	const ttl = 10 * time.Second
	log := filepath.Join(t.TempDir(), "hooks.log")
	w := servertest.Watch(t, c.Registry(t, 0), &pb.WatchRequest{Services: []string{"db"}})
	nodes := []*node{startNode(t, "h1", c.Zones[0], nodeOpts{ttl: ttl, endpoints: c.Endpoints(), priority: 3, hookLog: log})}
	w.WaitView("db", 10*time.Second, "h1 primary", primaryIs("h1"))
	nodes = append(nodes, startNode(t, "h2", c.Zones[1], nodeOpts{ttl: ttl, endpoints: c.Endpoints(), priority: 2, hookLog: log}))
	w.WaitView("db", 10*time.Second, "h2 standby", func(v *pb.View) bool { return servertest.Instance(v, "h2") != nil })
	start := time.Now()
	nodes[0].stop()
	got := w.WaitView("db", ttl/2, "h2 primary", primaryIs("h2"))
	t.Logf("h2 primary %v after h1 was told to stop (TTL %v)", got.At.Sub(start), ttl)
	assertNoOverlap(t, readHookLog(t, log))
}

// A primary cut off from etcd (traffic blackholed) demotes itself before its
// lease can expire; the majority side elects a new primary only after the
// lease expired, so the old demote hook ends before the new promote starts.
func TestPartitionedPrimaryFencesItselfFirst(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	const ttl = 2 * time.Second
	log := filepath.Join(t.TempDir(), "hooks.log")
	proxy := servertest.NewProxy(t, strings.TrimPrefix(c.Servers[0].Member().ClientURLs()[0], "http://"))
	h1 := startNode(t, "h1", "z1", nodeOpts{ttl: ttl, endpoints: []string{proxy.URL()}, priority: 3, hookLog: log})
	w := servertest.Watch(t, c.Registry(t, 1), &pb.WatchRequest{Services: []string{"db"}})
	w.WaitView("db", 10*time.Second, "h1 primary", primaryIs("h1"))
	startNode(t, "h2", "z2", nodeOpts{ttl: ttl, endpoints: c.Endpoints(), priority: 2, hookLog: log})
	w.WaitView("db", 10*time.Second, "h2 standby", func(v *pb.View) bool { return servertest.Instance(v, "h2") != nil })

	cut := time.Now()
	proxy.Blackhole()
	got := w.WaitView("db", ttl+5*time.Second, "h2 primary", primaryIs("h2"))
	t.Logf("h2 primary %v after h1 was cut off (TTL %v)", got.At.Sub(cut), ttl)
	if code := h1.endpoint(t, "/primary/db"); code != http.StatusServiceUnavailable {
		t.Errorf("cut-off h1 /primary/db = %d, want 503", code)
	}
	spans := readHookLog(t, log)
	assertNoOverlap(t, spans)
	if len(spans) < 2 {
		t.Fatalf("hook log has %d promotions, want 2", len(spans))
	}
	proxy.Heal()
}
