package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/topology"
)

func newTopologyCmd() *cobra.Command {
	var (
		addrs   []string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Show which single-zone losses the etcd cluster survives",
		Long: `Show, for the etcd members behind the registry and the zone each one
records, which zones the cluster can lose one at a time and keep its quorum,
and warn about every zone that would take the quorum with it.

Learners do not vote and do not count. Voting members with no zone recorded
(a server started without --zone) are counted together in zone "?", as if
they shared one, and are a warning of their own.

Exit status: 0 when every single-zone loss leaves a quorum and every voting
member's zone is known, 1 when not (or when no registry answers), 2 for bad
flags: "understudy topology" can gate a deployment in a script or CI.`,
		Example: "  understudy topology\n  understudy topology --json --registry 10.0.0.1:7420,10.0.0.2:7420",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			var cluster *pb.ClusterStatusResponse
			err := firstAnswer(ctx, addrs, func(ctx context.Context, cli pb.RegistryServiceClient) (err error) {
				cluster, err = cli.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
				return err
			})
			if err != nil {
				return err
			}
			r := topology.Compute(topologyMembers(cluster))
			if jsonOut {
				if err := printTopologyJSON(cmd.OutOrStdout(), r, cluster.GetStale()); err != nil {
					return err
				}
			} else {
				printTopology(cmd.OutOrStdout(), r, cluster.GetStale())
			}
			if !r.OK {
				return fmt.Errorf("not every single-zone loss is known to leave a quorum (warnings: %d)", len(r.Warnings))
			}
			return nil
		},
	}
	registryFlag(cmd, &addrs)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

// topologyMembers turns the members a registry reports into the input of
// topology.Compute. A member added but not started yet has no name: its ID
// stands in.
func topologyMembers(cluster *pb.ClusterStatusResponse) []topology.Member {
	var out []topology.Member
	for _, m := range cluster.GetMembers() {
		name := m.GetName()
		if name == "" {
			name = fmt.Sprintf("%x", m.GetId())
		}
		out = append(out, topology.Member{Name: name, Zone: m.GetZone(), Learner: m.GetIsLearner()})
	}
	return out
}

func printTopologyJSON(out io.Writer, r topology.Report, stale bool) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		topology.Report
		// Stale: the member list came from a member without a quorum.
		Stale bool `json:"stale"`
	}{r, stale})
}

func printTopology(out io.Writer, r topology.Report, stale bool) {
	fmt.Fprintf(out, "etcd members: %d voting, quorum %d", r.Voters, r.Quorum)
	if stale {
		fmt.Fprint(out, " (STALE: listed by a member without a quorum)")
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  ZONE\tMEMBERS\tSURVIVES ITS LOSS")
	for _, z := range r.Zones {
		names := append([]string{}, z.Members...)
		for _, l := range z.Learners {
			names = append(names, l+" (learner)")
		}
		survives := "NO"
		if z.Survives {
			survives = "yes"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s: %d of %d voting members left\n", z.Name, orDash(strings.Join(names, ", ")), survives, z.Remaining, r.Voters)
	}
	_ = tw.Flush()

	if survivable, zones := r.ZoneLosses(); zones > 0 {
		fmt.Fprintf(out, "\nzones the cluster can lose, one at a time: %d of %d\n", survivable, zones)
	}
	for _, section := range []struct {
		title string
		lines []string
	}{{"warnings", r.Warnings}, {"notes", r.Notes}} {
		if len(section.lines) == 0 {
			continue
		}
		fmt.Fprintf(out, "\n%s\n", section.title)
		for _, l := range section.lines {
			fmt.Fprintf(out, "  %s\n", l)
		}
	}
}
