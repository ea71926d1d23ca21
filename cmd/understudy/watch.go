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
	"github.com/understudy-dev/understudy/registry/feed"
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
	print := func(v *pb.View) {
		if jsonOut {
			b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(v)
			fmt.Fprintln(out, string(b))
			return
		}
		fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05.000"), registry.FormatView(v))
	}
	cfg := feed.Config{
		Addrs:    addrs,
		Services: services,
		OnError: func(addr string, err error, next string) {
			fmt.Fprintf(os.Stderr, "understudy: registry %s: %s; trying %s\n", addr, status.Convert(err).Message(), next)
		},
	}
	err := feed.Follow(ctx, cfg, func(m *pb.WatchResponse) {
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
	})
	if status.Code(err) == codes.InvalidArgument {
		return usageError{errors.New(status.Convert(err).Message())}
	}
	return err
}
