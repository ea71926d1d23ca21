package resolver_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/understudy-dev/understudy/agent"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/client"
	"github.com/understudy-dev/understudy/registry/resolver"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// backend is one host of the primary-mode service "db": an agent, and a
// gRPC server (the standard health service) at the instance's address that
// the agent's tcp check connects to. Like a database standby refusing
// writes, it answers only while its agent acts as primary; every answer
// names the host in a response header.
type backend struct {
	name  string
	addr  string
	agent atomic.Pointer[agent.Agent]

	mu sync.Mutex
	gs *grpc.Server // nil while failed
	wg sync.WaitGroup

	cancel context.CancelFunc
	done   chan struct{}
}

const hostHeader = "understudy-host"

func startBackend(t *testing.T, name, zone string, priority int32, endpoints []string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, addr: ln.Addr().String(), done: make(chan struct{})}
	b.serve(ln)
	t.Cleanup(b.fail)

	rise, fall := 1, 1
	a, err := agent.New(&agent.Config{
		Host: name, Zone: zone, EtcdEndpoints: endpoints, TTL: agent.D(5 * time.Second), HTTPAddr: "off",
		ElectionStep: agent.D(50 * time.Millisecond),
		Services: []agent.ServiceConfig{{
			Name: "db", Mode: agent.ModePrimary, Address: b.addr, Priority: priority,
			Hooks: agent.HooksConfig{Demote: []string{"true"}},
			Check: agent.CheckConfig{TCP: "self", Interval: agent.D(50 * time.Millisecond), Timeout: agent.D(50 * time.Millisecond), Rise: &rise, Fall: &fall},
		}},
	}, agent.Options{Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	b.agent.Store(a)
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() { defer close(b.done); _ = a.Run(ctx) }()
	t.Cleanup(func() { b.cancel(); <-b.done })
	return b
}

// serve starts a fresh gRPC server on ln.
func (b *backend) serve(ln net.Listener) {
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(hostHeader, b.name))
		if a := b.agent.Load(); a == nil || !a.Acting("db") {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not the primary", b.name)
		}
		return handler(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	b.mu.Lock()
	b.gs = gs
	b.mu.Unlock()
	b.wg.Go(func() { _ = gs.Serve(ln) })
}

// fail stops the gRPC server: connections are cut, new ones refused, and the
// agent's check fails.
func (b *backend) fail() {
	b.mu.Lock()
	gs := b.gs
	b.gs = nil
	b.mu.Unlock()
	if gs != nil {
		gs.Stop()
	}
	b.wg.Wait()
}

// heal serves again on the same address.
func (b *backend) heal(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		t.Fatalf("%s: listen again on %s: %v", b.name, b.addr, err)
	}
	b.serve(ln)
}

// call is one call made through the resolver.
type call struct {
	at   time.Time
	host string // who answered, when it succeeded
	err  error
}

// caller calls the health service through conn until stopped, each call
// with a short deadline, and records every call.
type caller struct {
	mu    sync.Mutex
	calls []call
}

func (c *caller) run(ctx context.Context, conn *grpc.ClientConn) {
	hc := healthpb.NewHealthClient(conn)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		var md metadata.MD
		at := time.Now()
		_, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
		cancel()
		if ctx.Err() != nil {
			return
		}
		cl := call{at: at, err: err}
		if err == nil {
			cl.host = strings.Join(md.Get(hostHeader), ",")
		}
		c.mu.Lock()
		c.calls = append(c.calls, cl)
		c.mu.Unlock()
		if err != nil {
			time.Sleep(time.Millisecond) // fail-fast errors would spin
		}
	}
}

// since returns the calls started at or after t.
func (c *caller) since(t time.Time) []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, _ := slices.BinarySearchFunc(c.calls, t, func(cl call, t time.Time) int { return cl.at.Compare(t) })
	return slices.Clone(c.calls[i:])
}

// answeredBy reports whether a call started at or after t succeeded on host.
func (c *caller) answeredBy(t time.Time, host string) (time.Time, bool) {
	for _, cl := range c.since(t) {
		if cl.err == nil && cl.host == host {
			return cl.at, true
		}
	}
	return time.Time{}, false
}

// failoverRow is one line of the report.
type failoverRow struct {
	kind      string
	from, to  string
	viewAfter time.Duration // new primary in the client's view
	okAfter   time.Duration // first successful call on the new primary
	calls     int           // calls between the fault and that success
	failed    int
	codes     map[codes.Code]int
}

// A gRPC service behind the resolver keeps answering across 20 failovers of
// its primary, alternating switchovers and check failures: after each, calls
// reach the new primary again.
func TestGRPCServiceFollowsTwentyFailovers(t *testing.T) {
	const failovers = 20
	c := servertest.StartCluster(t, 3)
	var backends []*backend
	byName := map[string]*backend{}
	for i, prio := range []int32{3, 2, 1} {
		b := startBackend(t, fmt.Sprintf("h%d", i+1), c.Zones[i], prio, c.Endpoints())
		backends = append(backends, b)
		byName[b.name] = b
	}
	var addrs []string
	for _, s := range c.Servers {
		addrs = append(addrs, s.GRPCAddr())
	}
	rc, err := client.NewFromConfig(context.Background(), client.Config{Addrs: addrs, Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	conn, err := grpc.NewClient("understudy:///db?role=primary",
		grpc.WithResolvers(resolver.NewBuilder(rc, resolver.WithLogger(servertest.Quiet(t)))),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	// steady waits until every host is passing, one is acting as primary,
	// and calls succeed on it; it returns the primary.
	steady := func(what string) string {
		t.Helper()
		var primary string
		servertest.WaitUntil(t, 10*time.Second, what+": all passing with a primary", func() bool {
			v, _ := rc.View("db")
			primary = v.GetPrimary().GetHost()
			return len(rc.Members("db")) == len(backends) && primary != "" && !v.GetStale() &&
				byName[primary].agent.Load().Acting("db")
		})
		return primary
	}

	etcd := c.Client(t)
	cl := &caller{}
	ctx, stopCalls := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { cl.run(ctx, conn) })
	defer func() { stopCalls(); wg.Wait() }()

	cur := steady("start")
	start := time.Now()
	servertest.WaitUntil(t, 10*time.Second, "first call answered by "+cur, func() bool { _, ok := cl.answeredBy(start, cur); return ok })

	var rows []failoverRow
	for i := range failovers {
		row := failoverRow{from: cur, codes: map[codes.Code]int{}}
		t0 := time.Now()
		if i%2 == 0 {
			// A switchover through the registry API (which writes the
			// control key), to each host in turn, so that every host
			// takes the role; check failures hand it to the best ranked.
			next := backends[(i/2)%len(backends)].name
			if next == cur {
				next = backends[(i/2+1)%len(backends)].name
			}
			row.kind = "switchover"
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.Registry(t, i%len(c.Servers)).Switchover(sctx, &pb.SwitchoverRequest{Service: "db", To: next})
			cancel()
			if err != nil {
				t.Fatalf("failover %d: switchover %s → %s: %v", i+1, cur, next, err)
			}
		} else {
			row.kind = "check fails"
			byName[cur].fail()
		}
		servertest.WaitUntil(t, 10*time.Second, fmt.Sprintf("failover %d: a new primary", i+1), func() bool {
			p, ok := rc.Primary("db")
			if ok && p.GetHost() != cur {
				row.to = p.GetHost()
				return true
			}
			return false
		})
		row.viewAfter = time.Since(t0)
		if row.viewAfter > 500*time.Millisecond {
			// Slower than an election step or two: show what the agents saw.
			gctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := etcd.Get(gctx, registry.ControlKey("db"))
			evs, evErr := c.Registry(t, 0).ListEvents(gctx, &pb.ListEventsRequest{Service: "db", Limit: 6})
			cancel()
			var ctl string
			if err == nil && len(resp.Kvs) > 0 {
				ctl = string(resp.Kvs[0].Value)
			}
			var lines []string
			for _, ev := range evs.GetEvents() {
				lines = append(lines, registry.FormatEvent(ev))
			}
			t.Logf("failover %d (%s %s→%s) took %v; control record now: %q (err %v); last events (err %v):\n%s",
				i+1, row.kind, row.from, row.to, row.viewAfter, ctl, err, evErr, strings.Join(lines, "\n"))
		}
		var okAt time.Time
		servertest.WaitUntil(t, 10*time.Second, fmt.Sprintf("failover %d: a call answered by %s", i+1, row.to), func() bool {
			var ok bool
			okAt, ok = cl.answeredBy(t0, row.to)
			return ok
		})
		row.okAfter = okAt.Sub(t0)
		for _, call := range cl.since(t0) {
			if !call.at.Before(okAt) {
				break
			}
			row.calls++
			if call.err != nil {
				row.failed++
				row.codes[status.Code(call.err)]++
			}
		}
		rows = append(rows, row)
		if row.kind == "check fails" {
			byName[cur].heal(t)
		}
		cur = steady(fmt.Sprintf("after failover %d", i+1))
		if cur != row.to {
			t.Fatalf("failover %d: primary moved on to %s after %s took over", i+1, cur, row.to)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%-3s %-12s %-9s %10s %10s %6s %7s  %s\n", "#", "kind", "from→to", "view", "first ok", "calls", "failed", "failed by code")
	total, worst := 0, 0
	for i, r := range rows {
		var codeList []string
		for code, n := range r.codes {
			codeList = append(codeList, fmt.Sprintf("%v=%d", code, n))
		}
		slices.Sort(codeList)
		fmt.Fprintf(&b, "%-3d %-12s %-9s %10v %10v %6d %7d  %s\n", i+1, r.kind, r.from+"→"+r.to,
			r.viewAfter.Round(time.Millisecond), r.okAfter.Round(time.Millisecond), r.calls, r.failed, strings.Join(codeList, " "))
		total += r.failed
		worst = max(worst, r.failed)
	}
	all := cl.since(start)
	t.Logf("%d failovers through understudy:///db?role=primary; %d calls in all, %d failed around failovers (worst %d)\n%s",
		len(rows), len(all), total, worst, b.String())
}
