package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server"
)

// single describes a one-member registry server on fixed ports, so that it
// can be stopped and started again on the same addresses with its data.
type single struct {
	dir                    string
	grpcAddr, client, peer string
}

// newSingle picks the ports of a one-member server with port (freePort
// when nil); grpcAddr may be given.
func newSingle(dir, grpcAddr string, port func() (int, error)) (*single, error) {
	if port == nil {
		port = freePort
	}
	var ports [3]int
	for i := range ports {
		p, err := port()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	if grpcAddr == "" {
		grpcAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	}
	return &single{
		dir:      dir,
		grpcAddr: grpcAddr,
		client:   fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		peer:     fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
	}, nil
}

// start starts the server and waits until it has loaded its views.
func (s *single) start(log *slog.Logger) (*server.Server, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := server.Start(server.Config{
		Member: &server.MemberConfig{
			Name: "m1", DataDir: filepath.Join(s.dir, "m1"),
			ListenClientURLs: []string{s.client}, AdvertiseClientURLs: []string{s.client},
			ListenPeerURLs: []string{s.peer}, AdvertisePeerURLs: []string{s.peer},
			InitialCluster: "m1=" + s.peer, InitialClusterState: "new", Profile: server.ProfileLAN,
		},
		GRPCAddr:     s.grpcAddr,
		HTTPAddr:     "127.0.0.1:0",
		StartTimeout: 30 * time.Second,
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-srv.Hub().Ready():
		return srv, nil
	case <-time.After(30 * time.Second):
		srv.Close()
		return nil, fmt.Errorf("server did not load its views within 30s")
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// putInstance registers an instance of service on host.
func putInstance(cli *clientv3.Client, service, host, addr string, mode pb.Mode, health pb.Health) error {
	return putRecord(cli, registry.InstanceKey(host, service), &pb.Instance{
		Host: host, Service: service, Zone: "z1", Address: addr, Mode: mode, Health: health,
	})
}

// putPrimary records host as the acting primary of service.
func putPrimary(cli *clientv3.Client, service, host, addr string, epoch int64) error {
	return putRecord(cli, registry.PrimaryKey(service), &pb.Primary{Host: host, Address: addr, Epoch: epoch, Zone: "z1"})
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
