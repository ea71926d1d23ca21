package servertest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/server"
)

// Cluster is n registry servers, each with an embedded etcd member, forming
// one etcd cluster on loopback.
type Cluster struct {
	t       testing.TB
	Servers []*server.Server
	Zones   []string
	stopped []bool
}

// handedOut holds every port FreePort returned in this process: the kernel
// may offer a just-closed port again, and two members must never share one.
var handedOut sync.Map

// FreePort returns a loopback port that was free a moment ago and that no
// earlier call in this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

// Quiet is a logger for tests that only prints warnings and errors, or
// the level named by the UNDERSTUDY_TEST_LOG environment variable (debug,
// info) when chasing a failure.
func Quiet(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if env := os.Getenv("UNDERSTUDY_TEST_LOG"); env != "" {
		_ = level.UnmarshalText([]byte(env))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// StartCluster starts n servers in zones z1..zn and waits until every one has
// loaded its views. The cluster is closed when the test ends.
//
// Ports are picked free and then bound by etcd, so a test binary running in
// parallel can take one in between; such a start is retried with new ports.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := startCluster(t, n)
		if err == nil {
			return c
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying cluster start with new ports: %v", err)
	}
}

func startCluster(t testing.TB, n int) (*Cluster, error) {
	c := &Cluster{t: t, Servers: make([]*server.Server, n), stopped: make([]bool, n)}
	cfgs := make([]server.MemberConfig, n)
	peers := make([]string, n)
	dir := t.TempDir()
	for i := range n {
		name := fmt.Sprintf("m%d", i+1)
		client := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
		peer := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
		peers[i] = name + "=" + peer
		zone := fmt.Sprintf("z%d", i+1)
		c.Zones = append(c.Zones, zone)
		cfgs[i] = server.MemberConfig{
			Name: name, Zone: zone, DataDir: fmt.Sprintf("%s/%s", dir, name),
			ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
			ListenPeerURLs: []string{peer}, AdvertisePeerURLs: []string{peer},
			InitialClusterState: "new", Profile: server.ProfileLAN,
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		cfgs[i].InitialCluster = strings.Join(peers, ",")
		wg.Go(func() {
			c.Servers[i], errs[i] = server.Start(server.Config{
				Member:       &cfgs[i],
				GRPCAddr:     "127.0.0.1:0",
				HTTPAddr:     "127.0.0.1:0",
				StartTimeout: 30 * time.Second,
				Logger:       Quiet(t),
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start server %d: %w", i, err)
		}
	}
	t.Cleanup(c.Close)
	for _, s := range c.Servers {
		select {
		case <-s.Hub().Ready():
		case <-time.After(30 * time.Second):
			return nil, errors.New("server did not load its views within 30s")
		}
	}
	return c, nil
}

// Endpoints returns the etcd client URLs of the running members.
func (c *Cluster) Endpoints() []string {
	var out []string
	for i, s := range c.Servers {
		if !c.stopped[i] {
			out = append(out, s.Member().ClientURLs()...)
		}
	}
	return out
}

// Stop stops server i and its member.
func (c *Cluster) Stop(i int) {
	c.stopped[i] = true
	c.Servers[i].Close()
}

// Close stops every server.
func (c *Cluster) Close() {
	for i := range c.Servers {
		if c.Servers[i] != nil {
			c.Stop(i)
		}
	}
}

// Client returns an etcd client to every running member, closed with the test.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return NewClient(t, c.Endpoints()...)
}

// NewClient returns an etcd client to endpoints, closed with the test.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Registry dials the gRPC API of server i, closed with the test.
func (c *Cluster) Registry(t testing.TB, i int) pb.RegistryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(c.Servers[i].GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial registry: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewRegistryServiceClient(conn)
}
