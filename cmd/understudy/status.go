package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

func newStatusCmd() *cobra.Command {
	var (
		addrs   []string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show etcd members (zone, leader, health), agent hosts and services",
		Args:  args(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var cluster *pb.ClusterStatusResponse
			var services *pb.ListServicesResponse
			err := firstAnswer(ctx, addrs, func(ctx context.Context, cli pb.RegistryServiceClient) error {
				var err error
				if cluster, err = cli.ClusterStatus(ctx, &pb.ClusterStatusRequest{}); err != nil {
					return err
				}
				services, err = cli.ListServices(ctx, &pb.ListServicesRequest{})
				return err
			})
			if err != nil {
				return err
			}
			if jsonOut {
				return printStatusJSON(os.Stdout, cluster, services)
			}
			printStatus(os.Stdout, cluster, services)
			return nil
		},
	}
	registryFlag(cmd, &addrs)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

func printStatusJSON(out io.Writer, cluster *pb.ClusterStatusResponse, services *pb.ListServicesResponse) error {
	m := protojson.MarshalOptions{UseProtoNames: true}
	c, err := m.Marshal(cluster)
	if err != nil {
		return err
	}
	s, err := m.Marshal(services)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]json.RawMessage{"cluster": c, "services": s})
}

func printStatus(out io.Writer, cluster *pb.ClusterStatusResponse, services *pb.ListServicesResponse) {
	quorum := "yes"
	if !cluster.GetQuorum() {
		quorum = "NO"
	}
	fmt.Fprintf(out, "etcd members (quorum: %s, leader: %s, revision %d)", quorum, orDash(cluster.GetLeader()), cluster.GetRevision())
	if cluster.GetStale() {
		fmt.Fprint(out, " STALE")
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tZONE\tROLE\tHEALTH\tCLIENT URLS")
	for _, m := range cluster.GetMembers() {
		role := "follower"
		switch {
		case m.GetIsLeader():
			role = "leader"
		case m.GetIsLearner():
			role = "learner"
		}
		health := "reachable"
		if !m.GetReachable() {
			health = "UNREACHABLE"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.GetName(), orDash(m.GetZone()), role, health, strings.Join(m.GetClientUrls(), ","))
	}
	_ = tw.Flush()

	fmt.Fprintf(out, "\nhosts (%d)\n", len(cluster.GetHosts()))
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  HOST\tZONE\tAGENT\tUP SINCE")
	for _, h := range cluster.GetHosts() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", h.GetName(), orDash(h.GetZone()), h.GetAgentVersion(), h.GetStartedAt().AsTime().Local().Format(time.DateTime))
	}
	_ = tw.Flush()

	fmt.Fprintf(out, "\nservices (%d)\n", len(services.GetViews()))
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERVICE\tMODE\tSTATUS\tHEALTHY\tINSTANCES")
	for _, v := range services.GetViews() {
		var ins []string
		for _, in := range v.GetInstances() {
			ins = append(ins, fmt.Sprintf("%s@%s(%s)", in.GetHost(), in.GetZone(), registry.HealthName(in.GetHealth())))
		}
		st := registry.StatusName(v.GetStatus())
		if v.GetStale() {
			st += " (stale)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d/%d\t%s\n", v.GetService(), registry.ModeName(v.GetMode()), st,
			len(registry.Healthy(v)), len(v.GetInstances()), strings.Join(ins, " "))
	}
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
