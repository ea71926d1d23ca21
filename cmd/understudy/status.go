package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// statusEvents is how many recent events status shows per primary-mode service.
const statusEvents = 3

// statusReport is what `understudy status` shows.
type statusReport struct {
	cluster  *pb.ClusterStatusResponse
	services *pb.ListServicesResponse
	// events holds the newest statusEvents events of each primary-mode
	// service, oldest first; eventErrs why they could not be read.
	events    map[string][]*pb.Event
	eventErrs map[string]string
}

func newStatusCmd() *cobra.Command {
	var (
		addrs   []string
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show etcd members (zone, leader, health), agent hosts, services and their primaries",
		Long: fmt.Sprintf(`Show the etcd members behind the registry (zone, leader, health), the hosts
running agents, and every service: mode, status, healthy instances, and for
primary-mode services the primary (host@zone, epoch), whether failover is
PAUSED, and the last %d role changes.`, statusEvents),
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var r *statusReport
			err := firstAnswer(ctx, addrs, func(ctx context.Context, cli pb.RegistryServiceClient) (err error) {
				r, err = readStatus(ctx, cli)
				return err
			})
			if err != nil {
				return err
			}
			if jsonOut {
				return printStatusJSON(cmd.OutOrStdout(), r)
			}
			printStatus(cmd.OutOrStdout(), r)
			return nil
		},
	}
	registryFlag(cmd, &addrs)
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return cmd
}

// readStatus asks one registry for everything status shows. Events are
// extra: a registry that cannot list them still answers.
func readStatus(ctx context.Context, cli pb.RegistryServiceClient) (*statusReport, error) {
	r := &statusReport{events: map[string][]*pb.Event{}, eventErrs: map[string]string{}}
	var err error
	if r.cluster, err = cli.ClusterStatus(ctx, &pb.ClusterStatusRequest{}); err != nil {
		return nil, err
	}
	if r.services, err = cli.ListServices(ctx, &pb.ListServicesRequest{}); err != nil {
		return nil, err
	}
	for _, v := range r.services.GetViews() {
		if v.GetMode() != pb.Mode_MODE_PRIMARY {
			continue
		}
		resp, err := cli.ListEvents(ctx, &pb.ListEventsRequest{Service: v.GetService(), Limit: statusEvents})
		if err != nil {
			r.eventErrs[v.GetService()] = status.Convert(err).Message()
			continue
		}
		r.events[v.GetService()] = resp.GetEvents()
	}
	return r, nil
}

func printStatusJSON(out io.Writer, r *statusReport) error {
	m := protojson.MarshalOptions{UseProtoNames: true}
	c, err := m.Marshal(r.cluster)
	if err != nil {
		return err
	}
	s, err := m.Marshal(r.services)
	if err != nil {
		return err
	}
	events := map[string][]json.RawMessage{}
	for service, evs := range r.events {
		events[service] = []json.RawMessage{}
		for _, ev := range evs {
			b, err := m.Marshal(ev)
			if err != nil {
				return err
			}
			events[service] = append(events[service], b)
		}
	}
	e, err := json.Marshal(events)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]json.RawMessage{"cluster": c, "services": s, "events": e})
}

func printStatus(out io.Writer, r *statusReport) {
	cluster, services := r.cluster, r.services
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
	fmt.Fprintln(tw, "  SERVICE\tMODE\tSTATUS\tHEALTHY\tPRIMARY\tINSTANCES")
	for _, v := range services.GetViews() {
		var ins []string
		for _, in := range v.GetInstances() {
			ins = append(ins, fmt.Sprintf("%s@%s(%s)", in.GetHost(), in.GetZone(), registry.HealthName(in.GetHealth())))
		}
		st := registry.StatusName(v.GetStatus())
		if v.GetPaused() {
			st += " PAUSED"
		}
		if v.GetStale() {
			st += " (stale)"
		}
		primary := "-"
		if p := v.GetPrimary(); p != nil {
			primary = fmt.Sprintf("%s@%s epoch=%d", p.GetHost(), orDash(p.GetZone()), p.GetEpoch())
		} else if v.GetMode() == pb.Mode_MODE_PRIMARY {
			primary = "NONE"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d/%d\t%s\t%s\n", v.GetService(), registry.ModeName(v.GetMode()), st,
			len(registry.Healthy(v)), len(v.GetInstances()), primary, strings.Join(ins, " "))
	}
	_ = tw.Flush()

	var primaryMode []string
	for _, v := range services.GetViews() {
		if v.GetMode() == pb.Mode_MODE_PRIMARY {
			primaryMode = append(primaryMode, v.GetService())
		}
	}
	if len(primaryMode) == 0 {
		return
	}
	fmt.Fprintf(out, "\nrecent events (last %d per primary-mode service)\n", statusEvents)
	for _, service := range primaryMode {
		fmt.Fprintf(out, "  %s\n", service)
		if msg, failed := r.eventErrs[service]; failed {
			fmt.Fprintf(out, "    (cannot list events: %s)\n", msg)
			continue
		}
		if len(r.events[service]) == 0 {
			fmt.Fprintf(out, "    (none in the last %s)\n", retention())
		}
		for _, ev := range r.events[service] {
			fmt.Fprintf(out, "    %s\n", registry.FormatEvent(ev))
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
