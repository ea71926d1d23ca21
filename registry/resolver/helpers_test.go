package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server"
)

// startSingle starts a registry server with a one-member embedded etcd on
// free loopback ports, in dir, and waits until it has loaded its views.
func startSingle(dir string, log *slog.Logger) (*server.Server, error) {
	var urls [2]string
	for i := range urls {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		urls[i] = "http://" + ln.Addr().String()
		_ = ln.Close()
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := server.Start(server.Config{
		Member: &server.MemberConfig{
			Name: "m1", DataDir: filepath.Join(dir, "m1"),
			ListenClientURLs: urls[:1], AdvertiseClientURLs: urls[:1],
			ListenPeerURLs: urls[1:], AdvertisePeerURLs: urls[1:],
			InitialCluster: "m1=" + urls[1], InitialClusterState: "new", Profile: server.ProfileLAN,
		},
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		StartTimeout: 30 * time.Second, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-srv.Hub().Ready():
		return srv, nil
	case <-time.After(30 * time.Second):
		srv.Close()
		return nil, errors.New("server did not load its views within 30s")
	}
}

// putRecord stores m at key as protojson, as agents do.
func putRecord(cli *clientv3.Client, key string, m proto.Message) error {
	b, err := registry.Encode(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, key, string(b))
	return err
}

func deleteKey(cli *clientv3.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cli.Delete(ctx, key)
	return err
}

func instance(service, host, addr string, mode pb.Mode, health pb.Health) *pb.Instance {
	return &pb.Instance{Host: host, Service: service, Zone: "z1", Address: addr, Mode: mode, Health: health}
}

// recorder is a resolver.ClientConn that records what a resolver reports.
type recorder struct {
	mu     sync.Mutex
	states []resolver.State
	errs   []error
}

func (r *recorder) UpdateState(s resolver.State) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
	return nil
}

func (r *recorder) ReportError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *recorder) NewAddress([]resolver.Address) {}

func (r *recorder) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Err: errors.New("no service config")}
}

// last returns the addresses of the last state, sorted, and whether any
// state was reported.
func (r *recorder) last() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.states) == 0 {
		return nil, false
	}
	var out []string
	for _, e := range r.states[len(r.states)-1].Endpoints {
		for _, a := range e.Addresses {
			out = append(out, a.Addr)
		}
	}
	slices.Sort(out)
	return out, true
}

// wait polls until the last state has exactly want (in any order).
func (r *recorder) wait(t *testing.T, what string, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, ok := r.last()
		if ok && slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: addresses %v (reported: %v), want %v", what, got, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *recorder) errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(fmt.Errorf("setup: %w", err))
		}
	}
}
