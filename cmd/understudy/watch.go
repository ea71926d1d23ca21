package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

func newWatchCmd() *cobra.Command {
	var (
		addrs   []string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "watch [SERVICE...]",
		Short: "Print one line per change of the named services (all when none named)",
		Long: `Print the current view of each service, then one line per change.
When a registry server goes away, watch moves on to the next --registry
address and resumes from the last revision it printed.`,
		Example: "  understudy watch cache\n  understudy watch db cache --json --registry 10.0.0.1:7420,10.0.0.2:7420",
		RunE: func(_ *cobra.Command, services []string) error {
			for i, s := range services {
				if err := registry.ValidateName(fmt.Sprintf("SERVICE %d", i+1), s); err != nil {
					return usageError{err}
				}
			}
			ctx, stop := signalContext()
			defer stop()
			return watch(ctx, os.Stdout, addrs, services, jsonOut)
		},
	}
	registryFlag(cmd, &addrs)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print each view as one line of JSON")
	return cmd
}

// watch follows the registry until ctx is done, moving between servers.
func watch(ctx context.Context, out io.Writer, addrs, services []string, jsonOut bool) error {
	var rev int64
	print := func(v *pb.View) {
		if jsonOut {
			b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(v)
			fmt.Fprintln(out, string(b))
			return
		}
		fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05.000"), registry.FormatView(v))
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		addr := addrs[attempt%len(addrs)]
		err := watchOnce(ctx, addr, services, &rev, print)
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.InvalidArgument {
			return usageError{errors.New(status.Convert(err).Message())}
		}
		fmt.Fprintf(os.Stderr, "understudy: registry %s: %s; trying %s\n", addr, status.Convert(err).Message(), addrs[(attempt+1)%len(addrs)])
		if (attempt+1)%len(addrs) == 0 {
			sleep(ctx, time.Second) // every server failed: pause before another round
		}
	}
	return nil
}

func watchOnce(ctx context.Context, addr string, services []string, rev *int64, print func(*pb.View)) error {
	conn, cli, err := dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := cli.Watch(ctx, &pb.WatchRequest{Services: services, FromRevision: *rev})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if m.GetSnapshot() {
			seen := map[string]bool{}
			for _, v := range m.GetViews() {
				seen[v.GetService()] = true
			}
			for _, s := range services {
				if !seen[s] {
					print(&pb.View{Service: s, Status: pb.Status_STATUS_DOWN, Revision: m.GetRevision()})
				}
			}
		}
		for _, v := range m.GetViews() {
			print(v)
		}
		*rev = max(*rev, m.GetRevision())
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
