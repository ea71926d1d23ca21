package client_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/client"
	"github.com/understudy-dev/understudy/registry/server"
)

// exampleServer starts a registry server with a one-member embedded etcd on
// free loopback ports and registers a primary-mode service "db" on two
// hosts, db-a (primary) and db-b, as their agents would. stop closes the
// server and removes its data.
func exampleServer() (srv *server.Server, stop func()) {
	dir, err := os.MkdirTemp("", "understudy-example")
	if err != nil {
		log.Fatal(err)
	}
	s, err := newSingle(dir, "", nil)
	if err != nil {
		log.Fatal(err)
	}
	if srv, err = s.start(nil); err != nil {
		log.Fatal(err)
	}
	for _, err := range []error{
		putInstance(srv.Client(), "db", "db-a", "10.0.0.1:5432", pb.Mode_MODE_PRIMARY, pb.Health_HEALTH_PASSING),
		putInstance(srv.Client(), "db", "db-b", "10.0.0.2:5432", pb.Mode_MODE_PRIMARY, pb.Health_HEALTH_PASSING),
		putPrimary(srv.Client(), "db", "db-a", "10.0.0.1:5432", 7),
	} {
		if err != nil {
			log.Fatal(err)
		}
	}
	return srv, func() {
		srv.Close()
		_ = os.RemoveAll(dir)
	}
}

// A client answers from its cache where the primary of a service is and
// which of its instances are healthy.
func Example() {
	srv, stop := exampleServer()
	defer stop()

	ctx := context.Background()
	c, err := client.NewFromConfig(ctx, client.Config{
		Addrs:  []string{srv.GRPCAddr()}, // in production: every registry server
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		log.Fatal(err) // names the servers tried and the last error
	}

	// Wait for the first view that has a primary (the records were written
	// a moment ago).
	views, stopWatch := c.Watch("db")
	defer stopWatch()
	for v := range views {
		if v.GetPrimary() != nil {
			break
		}
	}

	p, _ := c.Primary("db")
	fmt.Println("primary:", p.GetHost(), p.GetAddress())
	for _, in := range c.Members("db") {
		fmt.Println("healthy:", in.GetHost(), in.GetAddress())
	}
	// Output:
	// primary: db-a 10.0.0.1:5432
	// healthy: db-a 10.0.0.1:5432
	// healthy: db-b 10.0.0.2:5432
}

// Watch delivers every change of a service's view, in order; a slow reader
// gets the latest view instead of a backlog.
func ExampleClient_Watch() {
	srv, stop := exampleServer()
	defer stop()

	c, err := client.NewFromConfig(context.Background(), client.Config{
		Addrs:  []string{srv.GRPCAddr()},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	views, stopWatch := c.Watch("db")
	defer stopWatch()
	last := ""
	for v := range views {
		host := v.GetPrimary().GetHost()
		if host == "" || host == last {
			continue // no primary yet, or another change (health, tags)
		}
		fmt.Printf("primary of db is %s (epoch %d)\n", host, v.GetPrimary().GetEpoch())
		last = host
		if host == "db-b" {
			break
		}
		// A failover: the agent on db-b records itself as the new primary.
		if err := putPrimary(srv.Client(), "db", "db-b", "10.0.0.2:5432", 9); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// primary of db is db-a (epoch 7)
	// primary of db is db-b (epoch 9)
}
