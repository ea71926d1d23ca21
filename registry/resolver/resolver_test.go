package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	grpcresolver "google.golang.org/grpc/resolver"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/client"
	"github.com/understudy-dev/understudy/registry/resolver"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }

func target(t *testing.T, s string) grpcresolver.Target {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return grpcresolver.Target{URL: *u}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		target  string
		want    resolver.Target
		wantErr string // substring; empty: no error
	}{
		{"understudy:///postgres", resolver.Target{Service: "postgres"}, ""},
		{"understudy:///postgres?role=primary", resolver.Target{Service: "postgres", Role: resolver.RolePrimary}, ""},
		{"understudy:///postgres?role=standby", resolver.Target{Service: "postgres", Role: resolver.RoleStandby}, ""},
		{"understudy:///memcached?role=any", resolver.Target{Service: "memcached", Role: resolver.RoleAny}, ""},
		{"understudy:///postgres?role=leader", resolver.Target{}, `unknown role "leader"`},
		{"understudy:///postgres?role=", resolver.Target{}, `unknown role ""`},
		{"understudy:///postgres?role=primary&role=any", resolver.Target{}, "role given 2 times"},
		{"understudy:///postgres?weight=3", resolver.Target{}, `unknown parameter "weight"`},
		{"understudy:///db/replica", resolver.Target{}, `service "db/replica"`},
		{"understudy:///-db", resolver.Target{}, `service "-db"`},
		{"understudy:///", resolver.Target{}, "service is empty"},
		{"understudy://registry:7420/postgres", resolver.Target{}, `authority "registry:7420"`},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			got, err := resolver.ParseTarget(target(t, tt.target).URL)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, resolver.ErrBadTarget) {
				t.Errorf("got %+v, %v; want ErrBadTarget containing %q", got, err, tt.wantErr)
			}
		})
	}
}

// Build refuses a target it cannot resolve, naming it, before touching the
// registry.
func TestBuildRejectsBadTargets(t *testing.T) {
	c, err := client.New(context.Background(), "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := resolver.NewBuilder(c)
	if b.Scheme() != "understudy" {
		t.Errorf("scheme %q", b.Scheme())
	}
	for s, want := range map[string]string{
		"understudy:///postgres?role=leader": `unknown role "leader"`,
		"understudy:///db/replica":           `service "db/replica"`,
	} {
		r, err := b.Build(target(t, s), &recorder{}, grpcresolver.BuildOptions{})
		if err == nil {
			r.Close()
			t.Errorf("Build(%s) succeeded", s)
			continue
		}
		if !strings.Contains(err.Error(), s) || !strings.Contains(err.Error(), want) {
			t.Errorf("Build(%s) = %v: want the target and %q named", s, err, want)
		}
		t.Logf("Build(%s): %v", s, err)
	}
}

// A resolver whose registry client has no views tells the channel why
// (the servers tried, the last error) instead of leaving calls to time out;
// one whose client is closed says so.
func TestReportsUnreachableRegistry(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", servertest.FreePort(t))
	c, err := client.NewFromConfig(context.Background(), client.Config{Addrs: []string{addr}, Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := resolver.NewBuilder(c, resolver.WithReadyTimeout(100*time.Millisecond), resolver.WithLogger(servertest.Quiet(t)))
	rec := &recorder{}
	r, err := b.Build(target(t, "understudy:///db?role=primary"), rec, grpcresolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	servertest.WaitUntil(t, 5*time.Second, "an error reported", func() bool { return len(rec.errors()) > 0 })
	err = rec.errors()[0]
	t.Logf("reported: %v", err)
	if !errors.Is(err, client.ErrNoServer) || !strings.Contains(err.Error(), addr) {
		t.Errorf("reported %v, want ErrNoServer naming %s", err, addr)
	}
	if _, ok := rec.last(); ok {
		t.Error("a state was reported without any view")
	}
	c.Close()
	servertest.WaitUntil(t, 5*time.Second, "ErrClosed reported", func() bool {
		errs := rec.errors()
		return errors.Is(errs[len(errs)-1], client.ErrClosed)
	})
}

// Every role resolves to the right instances and follows every change of
// the view; a target with nothing to offer gets an empty state, not an
// error.
func TestAddressesFollowViews(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	const (
		prim = pb.Mode_MODE_PRIMARY
		pool = pb.Mode_MODE_POOL
		ok   = pb.Health_HEALTH_PASSING
		bad  = pb.Health_HEALTH_CRITICAL
	)
	must(t,
		putRecord(cli, registry.InstanceKey("h1", "db"), instance("db", "h1", "10.0.0.1:5432", prim, ok)),
		putRecord(cli, registry.InstanceKey("h2", "db"), instance("db", "h2", "10.0.0.2:5432", prim, ok)),
		putRecord(cli, registry.InstanceKey("h3", "db"), instance("db", "h3", "10.0.0.3:5432", prim, bad)),
		putRecord(cli, registry.PrimaryKey("db"), &pb.Primary{Host: "h1", Address: "10.0.0.1:5432", Epoch: 5}),
		putRecord(cli, registry.InstanceKey("h1", "memcached"), instance("memcached", "h1", "10.0.0.1:11211", pool, ok)),
		putRecord(cli, registry.InstanceKey("h2", "memcached"), instance("memcached", "h2", "10.0.0.2:11211", pool, ok)),
		putRecord(cli, registry.InstanceKey("h3", "memcached"), instance("memcached", "h3", "10.0.0.3:11211", pool, bad)),
	)
	rc, err := client.NewFromConfig(context.Background(), client.Config{Addrs: []string{c.Servers[0].GRPCAddr()}, Logger: servertest.Quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b := resolver.NewBuilder(rc, resolver.WithLogger(servertest.Quiet(t)))
	build := func(s string) *recorder {
		t.Helper()
		rec := &recorder{}
		r, err := b.Build(target(t, s), rec, grpcresolver.BuildOptions{})
		if err != nil {
			t.Fatalf("Build(%s): %v", s, err)
		}
		t.Cleanup(r.Close)
		return rec
	}
	primary := build("understudy:///db?role=primary")
	auto := build("understudy:///db")
	standby := build("understudy:///db?role=standby")
	anyDB := build("understudy:///db?role=any")
	cache := build("understudy:///memcached")
	cachePrimary := build("understudy:///memcached?role=primary")
	unknown := build("understudy:///nothing-here")

	primary.wait(t, "db primary", "10.0.0.1:5432")
	auto.wait(t, "db without a role", "10.0.0.1:5432")
	standby.wait(t, "db standbys", "10.0.0.2:5432")
	anyDB.wait(t, "db any", "10.0.0.1:5432", "10.0.0.2:5432")
	cache.wait(t, "memcached pool", "10.0.0.1:11211", "10.0.0.2:11211")
	cachePrimary.wait(t, "primary of a pool")
	unknown.wait(t, "unknown service")

	// h3 recovers.
	must(t, putRecord(cli, registry.InstanceKey("h3", "db"), instance("db", "h3", "10.0.0.3:5432", prim, ok)))
	standby.wait(t, "db standbys after h3 recovered", "10.0.0.2:5432", "10.0.0.3:5432")
	anyDB.wait(t, "db any after h3 recovered", "10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3:5432")
	// h1 loses the primary role: for a moment there is none.
	must(t, deleteKey(cli, registry.PrimaryKey("db")))
	primary.wait(t, "db primary while there is none")
	standby.wait(t, "db standbys while there is no primary", "10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3:5432")
	// h2 takes over.
	must(t, putRecord(cli, registry.PrimaryKey("db"), &pb.Primary{Host: "h2", Address: "10.0.0.2:5432", Epoch: 9}))
	primary.wait(t, "db primary after the failover", "10.0.0.2:5432")
	auto.wait(t, "db without a role after the failover", "10.0.0.2:5432")
	standby.wait(t, "db standbys after the failover", "10.0.0.1:5432", "10.0.0.3:5432")
	// A pool member leaves; a new service appears.
	must(t, deleteKey(cli, registry.InstanceKey("h1", "memcached")))
	cache.wait(t, "memcached after h1 left", "10.0.0.2:11211")
	must(t, putRecord(cli, registry.InstanceKey("h1", "nothing-here"), instance("nothing-here", "h1", "10.0.0.1:80", pool, ok)))
	unknown.wait(t, "a service that appeared", "10.0.0.1:80")

	for _, rec := range []*recorder{primary, auto, standby, anyDB, cache, cachePrimary, unknown} {
		if errs := rec.errors(); len(errs) > 0 {
			t.Errorf("resolver reported errors: %v", errs)
		}
	}
}
