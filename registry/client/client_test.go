package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/client"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }

const (
	primaryMode = pb.Mode_MODE_PRIMARY
	passing     = pb.Health_HEALTH_PASSING
)

// newClient starts a client closed when the test ends.
func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = servertest.Quiet(t)
	}
	c, err := client.NewFromConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitReady(t *testing.T, c *client.Client, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// grpcAddrs returns the gRPC addresses of the cluster's servers.
func grpcAddrs(c *servertest.Cluster) []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, s.GRPCAddr())
	}
	return out
}

// seedDB registers "db" with h1 primary and h2 standby.
func seedDB(t *testing.T, c *servertest.Cluster) {
	t.Helper()
	cli := c.Client(t)
	for _, err := range []error{
		putInstance(cli, "db", "h1", "10.0.0.1:5432", primaryMode, passing),
		putInstance(cli, "db", "h2", "10.0.0.2:5432", primaryMode, passing),
		putPrimary(cli, "db", "h1", "10.0.0.1:5432", 7),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// dbIntact says what is wrong with the client's view of the seeded "db",
// or "" when nothing is.
func dbIntact(c *client.Client, primary string) string {
	v, ok := c.View("db")
	switch {
	case !ok:
		return "view of db is missing"
	case len(v.GetInstances()) != 2:
		return fmt.Sprintf("view of db has %d instances, want 2", len(v.GetInstances()))
	case v.GetPrimary().GetHost() != primary:
		return fmt.Sprintf("view of db has primary %q, want %q", v.GetPrimary().GetHost(), primary)
	}
	if p, ok := c.Primary("db"); !ok || p.GetHost() != primary {
		return fmt.Sprintf("Primary(db) = %v, %v", p, ok)
	}
	if n := len(c.Members("db")); n != 2 {
		return fmt.Sprintf("Members(db) has %d instances, want 2", n)
	}
	return ""
}

// When the server a client watches stops, the client moves to another one
// within moments, resumes from its revision, and its view of a service is
// never missing or emptied meanwhile.
func TestSwitchesServerWhenItStops(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	seedDB(t, c)
	cl := newClient(t, client.Config{Addrs: grpcAddrs(c)})
	waitReady(t, cl, 10*time.Second)
	servertest.WaitUntil(t, 5*time.Second, "db with h1 primary", func() bool { return dbIntact(cl, "h1") == "" })
	old := cl.Status().Server
	idx := slices.Index(grpcAddrs(c), old)
	if idx < 0 {
		t.Fatalf("client watches %q, not one of the servers", old)
	}

	// Check the cache continuously while the server goes away, and record
	// every view a prompt watcher receives.
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		checks   atomic.Int64
		problems []string
		received []*pb.View
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p := dbIntact(cl, "h1"); p != "" && len(problems) < 10 {
				problems = append(problems, p)
			}
			checks.Add(1)
		}
	})
	views, cancelWatch := cl.Watch("db")
	wg.Go(func() {
		for v := range views {
			received = append(received, v)
		}
	})

	start := time.Now()
	c.Stop(idx)
	stopTook := time.Since(start)
	servertest.WaitUntil(t, 5*time.Second, "client on another server", func() bool {
		s := cl.Status().Server
		return s != "" && s != old
	})
	st := cl.Status()
	switched := st.Since.Sub(start)
	close(stop)
	cancelWatch()
	wg.Wait()
	t.Logf("server %d stopped (Stop took %v); client on %s %v after Stop began, without a server for %v; resumed=%v; %d cache checks meanwhile",
		idx, stopTook.Round(time.Millisecond), st.Server, switched.Round(time.Millisecond), st.LastOutage, st.Resumed, checks.Load())
	for _, p := range problems {
		t.Error(p)
	}
	if switched > 5*time.Second {
		t.Errorf("switched after %v, want well under 5s", switched)
	}
	if !st.Resumed {
		t.Errorf("the new server sent a snapshot; want a resume from revision %d", st.Revision)
	}
	var marks []bool
	for _, v := range received {
		marks = append(marks, v.GetStale())
	}
	t.Logf("stale marks of the views a watcher received meanwhile: %v", marks)

	// The stale mark is gone, and the client follows changes again.
	if v, _ := cl.View("db"); v.GetStale() {
		t.Errorf("view still marked stale after the switch: %v", v)
	}
	if err := putPrimary(c.Client(t), "db", "h2", "10.0.0.2:5432", 9); err != nil {
		t.Fatal(err)
	}
	servertest.WaitUntil(t, 5*time.Second, "h2 primary seen through the new server", func() bool { return dbIntact(cl, "h2") == "" })
}

// A client started while no server is up returns at once, reports clearly
// why it is not ready, and recovers when a server comes up. When its only
// server goes away it keeps its views, marked stale, and clears the mark
// when the server is back.
func TestStartsWhileAllServersDownAndKeepsStaleViews(t *testing.T) {
	dir := t.TempDir()
	// Ports from servertest.FreePort are never handed out twice in this
	// process, so no other cluster takes them while the server is down.
	s, err := newSingle(dir, "", func() (int, error) { return servertest.FreePort(t), nil })
	if err != nil {
		t.Fatal(err)
	}
	other := fmt.Sprintf("127.0.0.1:%d", servertest.FreePort(t)) // never up
	start := time.Now()
	cl := newClient(t, client.Config{Addrs: []string{s.grpcAddr, other}})
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("New took %v with every server down; want it to return at once", took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = cl.WaitReady(ctx)
	cancel()
	t.Logf("WaitReady with every server down: %v", err)
	switch {
	case !errors.Is(err, client.ErrNoServer):
		t.Fatalf("WaitReady = %v, want ErrNoServer", err)
	case !strings.Contains(err.Error(), s.grpcAddr) || !strings.Contains(err.Error(), other):
		t.Errorf("error does not name both addresses %s and %s", s.grpcAddr, other)
	case !strings.Contains(err.Error(), "connection refused"):
		t.Errorf("error does not give the last error (connection refused)")
	}
	if st := cl.Status(); st.Ready || st.Server != "" || len(cl.Views()) != 0 {
		t.Errorf("status before any server = %+v with %d views", st, len(cl.Views()))
	}

	srv, err := s.start(servertest.Quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	defer func() { srv.Close() }()
	for _, err := range []error{
		putInstance(srv.Client(), "db", "h1", "10.0.0.1:5432", primaryMode, passing),
		putInstance(srv.Client(), "db", "h2", "10.0.0.2:5432", primaryMode, passing),
		putPrimary(srv.Client(), "db", "h1", "10.0.0.1:5432", 7),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, cl, 10*time.Second)
	t.Logf("ready %v after the server came up", time.Since(up).Round(time.Millisecond))
	servertest.WaitUntil(t, 5*time.Second, "db with h1 primary", func() bool { return dbIntact(cl, "h1") == "" })

	// Its only server goes away: the views stay, marked stale.
	srv.Close()
	servertest.WaitUntil(t, 5*time.Second, "views marked stale", func() bool {
		v, _ := cl.View("db")
		return v.GetStale()
	})
	if p := dbIntact(cl, "h1"); p != "" {
		t.Errorf("while no server is up: %s", p)
	}
	if st := cl.Status(); st.Server != "" || !st.Ready || st.LastError == nil {
		t.Errorf("status while no server is up = %+v, want no server, ready, and the last error", st)
	}
	if err := cl.WaitReady(context.Background()); err != nil {
		t.Errorf("WaitReady after the first views = %v, want nil even while reconnecting", err)
	}
	// Nothing changes while it stays down.
	time.Sleep(300 * time.Millisecond)
	if p := dbIntact(cl, "h1"); p != "" {
		t.Errorf("after 300ms without a server: %s", p)
	}

	// The same server (same data, same addresses) comes back.
	srv, err = s.start(servertest.Quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	servertest.WaitUntil(t, 10*time.Second, "stale mark cleared", func() bool {
		v, _ := cl.View("db")
		return v != nil && !v.GetStale()
	})
	t.Logf("views current again %v after the server came back", time.Since(back).Round(time.Millisecond))
	if p := dbIntact(cl, "h1"); p != "" {
		t.Errorf("after the server came back: %s", p)
	}
}

// A server that goes silent (its traffic blackholed, no error on the
// stream) is noticed by the health probe, and the client moves on.
func TestLeavesSilentServer(t *testing.T) {
	c := servertest.StartCluster(t, 2)
	seedDB(t, c)
	proxy := servertest.NewProxy(t, c.Servers[0].GRPCAddr())
	cl := newClient(t, client.Config{
		Addrs:         []string{proxy.Addr(), c.Servers[1].GRPCAddr()},
		ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 200 * time.Millisecond,
	})
	waitReady(t, cl, 10*time.Second)
	servertest.WaitUntil(t, 5*time.Second, "db with h1 primary", func() bool { return dbIntact(cl, "h1") == "" })
	if s := cl.Status().Server; s != proxy.Addr() {
		t.Fatalf("client watches %s, want the first address %s", s, proxy.Addr())
	}
	start := time.Now()
	proxy.Blackhole()
	defer proxy.Heal()
	servertest.WaitUntil(t, 5*time.Second, "client on the other server", func() bool {
		return cl.Status().Server == c.Servers[1].GRPCAddr()
	})
	st := cl.Status()
	t.Logf("left the silent server after %v (probe every 200ms, timeout 200ms): %v", st.Since.Sub(start).Round(time.Millisecond), st.LastError)
	if p := dbIntact(cl, "h1"); p != "" {
		t.Error(p)
	}
}

// When etcd loses its quorum, the surviving server serves its last views
// marked stale; the client keeps them (never emptied), even while it looks
// round the other addresses for a server with current views.
func TestQuorumLostKeepsViewsStale(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	seedDB(t, c)
	cl := newClient(t, client.Config{
		Addrs:         grpcAddrs(c),
		ProbeInterval: 100 * time.Millisecond, StaleSwitchAfter: 300 * time.Millisecond,
	})
	waitReady(t, cl, 10*time.Second)
	servertest.WaitUntil(t, 5*time.Second, "db with h1 primary", func() bool { return dbIntact(cl, "h1") == "" })

	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		problems []string
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if p := dbIntact(cl, "h1"); p != "" && len(problems) < 10 {
				problems = append(problems, p)
			}
		}
	})
	c.Stop(1)
	c.Stop(2)
	start := time.Now()
	servertest.WaitUntil(t, 15*time.Second, "the stale views of server 0", func() bool {
		v, _ := cl.View("db")
		return v.GetStale() && cl.Status().Server == c.Servers[0].GRPCAddr()
	})
	t.Logf("client on the quorum-less server 0 with stale views %v after the second member stopped", time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // the client moves round the addresses meanwhile
	close(stop)
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	if p, ok := cl.Primary("db"); !ok || p.GetHost() != "h1" {
		t.Errorf("Primary(db) = %v, %v while the quorum is lost; want the last known h1", p, ok)
	}
}

// A watcher that does not read gets the latest view, not a backlog, and
// never holds the client up; a watcher that reads sees views in order.
func TestWatchLatestValueWins(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	seedDB(t, c)
	cli := c.Client(t)
	cl := newClient(t, client.Config{Addrs: grpcAddrs(c)})
	waitReady(t, cl, 10*time.Second)

	slow, stopSlow := cl.Watch("db")
	defer stopSlow()
	fast, stopFast := cl.Watch("db")
	var revs []int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := range fast {
			revs = append(revs, v.GetRevision())
		}
	}()
	absentCh, stopAbsent := cl.Watch("nothing-here")
	if v := <-absentCh; v.GetService() != "nothing-here" || len(v.GetInstances()) != 0 || v.GetStatus() != pb.Status_STATUS_DOWN {
		t.Errorf("first view of an unknown service = %v, want an empty DOWN view", v)
	}
	stopAbsent()
	stopAbsent() // idempotent
	if _, ok := <-absentCh; ok {
		t.Error("channel still open after stop")
	}

	const n = 50
	for i := range n {
		addr := fmt.Sprintf("10.0.1.%d:5432", i)
		if err := putInstance(cli, "db", "h2", addr, primaryMode, passing); err != nil {
			t.Fatal(err)
		}
	}
	last := "10.0.1.49:5432"
	servertest.WaitUntil(t, 5*time.Second, "last change in the cache", func() bool {
		v, _ := cl.View("db")
		return len(v.GetInstances()) == 2 && v.GetInstances()[1].GetAddress() == last
	})
	select {
	case v := <-slow:
		if got := v.GetInstances()[1].GetAddress(); got != last {
			t.Errorf("slow watcher got h2 at %s, want the latest %s", got, last)
		}
	default:
		t.Fatal("slow watcher has nothing to read")
	}
	select {
	case v := <-slow:
		t.Errorf("slow watcher has a second view pending: %v", v)
	default:
	}
	stopFast()
	<-done
	if !slices.IsSorted(revs) || len(revs) < 2 {
		t.Errorf("fast watcher revisions %v: want at least two, in order", revs)
	}
	t.Logf("fast watcher received %d of %d changes (plus the first view)", len(revs)-1, n)
}

// A client limited to some services caches only those.
func TestServicesFilter(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	seedDB(t, c)
	cli := c.Client(t)
	if err := putInstance(cli, "cache", "h1", "10.0.0.1:11211", pb.Mode_MODE_POOL, passing); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, client.Config{Addrs: grpcAddrs(c), Services: []string{"db"}})
	waitReady(t, cl, 10*time.Second)
	servertest.WaitUntil(t, 5*time.Second, "db", func() bool { return dbIntact(cl, "h1") == "" })
	if _, ok := cl.View("cache"); ok {
		t.Error("a client limited to db caches cache")
	}
	ch, stop := cl.Watch("cache")
	defer stop()
	if _, ok := <-ch; ok {
		t.Error("Watch of a service outside the client's set: channel open, want closed")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no address", client.Config{}, "addrs is empty"},
		{"empty address", client.Config{Addrs: []string{"127.0.0.1:1", " "}}, "addrs[1] is empty"},
		{"bad service", client.Config{Addrs: []string{"127.0.0.1:1"}, Services: []string{"db", "a/b"}}, `services[1] "a/b"`},
		{"backoff", client.Config{Addrs: []string{"127.0.0.1:1"}, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "min-backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.NewFromConfig(context.Background(), tt.cfg)
			if err == nil {
				c.Close()
				t.Fatalf("NewFromConfig(%+v) succeeded, want an error containing %q", tt.cfg, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Close is idempotent, closes every watch channel, and a closed client
// reports ErrClosed.
func TestCloseIsIdempotent(t *testing.T) {
	c, err := client.New(context.Background(), fmt.Sprintf("127.0.0.1:%d", servertest.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	ch, stop := c.Watch("db")
	c.Close()
	c.Close()
	stop()
	if _, ok := <-ch; ok {
		t.Error("watch channel open after Close")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("WaitReady after Close = %v, want ErrClosed", err)
	}
}
