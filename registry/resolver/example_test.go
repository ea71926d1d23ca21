package resolver_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/client"
	"github.com/understudy-dev/understudy/registry/resolver"
)

// A program dials the primary of "db" by name; the channel follows the
// primary through failovers. Here the service is the standard gRPC health
// service, and the records its agent would write are written directly.
func Example() {
	dir, err := os.MkdirTemp("", "understudy-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := startSingle(dir, nil) // a registry server with an embedded etcd member
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// The primary of "db": a gRPC server on a free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(ln) })
	defer wg.Wait()
	defer gs.Stop()
	addr := ln.Addr().String()
	for _, err := range []error{
		putRecord(srv.Client(), registry.InstanceKey("db-a", "db"), instance("db", "db-a", addr, pb.Mode_MODE_PRIMARY, pb.Health_HEALTH_PASSING)),
		putRecord(srv.Client(), registry.PrimaryKey("db"), &pb.Primary{Host: "db-a", Address: addr, Epoch: 1}),
	} {
		if err != nil {
			log.Fatal(err)
		}
	}

	// One registry client per program, shared by every channel.
	c, err := client.NewFromConfig(context.Background(), client.Config{
		Addrs:  []string{srv.GRPCAddr()}, // in production: every registry server
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	conn, err := grpc.NewClient("understudy:///db?role=primary",
		grpc.WithResolvers(resolver.NewBuilder(c)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// WaitForReady: while there is no primary (between two terms, or
	// before the first view arrives) the call waits instead of failing.
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("db primary says", resp.GetStatus())
	// Output:
	// db primary says SERVING
}
