package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/eventlog"
)

// requestTimeout bounds one operator command, every registry tried included.
const requestTimeout = 15 * time.Second

// serviceArg validates the one SERVICE argument of an operator command.
func serviceArg(a []string) (string, error) {
	if err := registry.ValidateName("SERVICE", a[0]); err != nil {
		return "", usageError{err}
	}
	return a[0], nil
}

func newSwitchoverCmd() *cobra.Command {
	var (
		addrs []string
		to    string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "switchover SERVICE [--to HOST [--force]]",
		Short: "Ask the primary of SERVICE to hand its role to a healthy standby",
		Long: `Ask the primary of a primary-mode service to hand its role over: it runs
its demote hook and resigns, and the standby named with --to (or, without
--to, the best ranked healthy standby) takes over.

The registry refuses, saying why, when the service has no primary, is
paused, already has a switchover pending, or when the target is unknown,
unhealthy, tagged nofailover or already primary. Follow the handover with
"understudy watch SERVICE" or "understudy events SERVICE".

A standby whose data lags the service's high-water mark (the freshness the
last primary reported) by more than max_lag never takes over on its own.
--force lets the host named with --to take over anyway, with or without a
primary: writes only the last primary had may be lost. It is recorded as
an event.`,
		Example: "  understudy switchover postgres\n  understudy switchover postgres --to ol-db3\n  understudy switchover postgres --to ol-db3 --force",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			service, err := serviceArg(a)
			if err != nil {
				return err
			}
			if to != "" {
				if err := registry.ValidateName("--to", to); err != nil {
					return usageError{err}
				}
			}
			if force && to == "" {
				return usage("--force needs --to: name the host that may take over")
			}
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			var resp *pb.SwitchoverResponse
			err = firstAnswer(ctx, addrs, func(ctx context.Context, cli pb.RegistryServiceClient) (err error) {
				resp, err = cli.Switchover(ctx, &pb.SwitchoverRequest{Service: service, To: to, Force: force})
				return err
			})
			if err != nil {
				return err
			}
			target := resp.GetTo()
			if target == "" {
				target = "the best ranked standby"
			}
			from := resp.GetFrom()
			if from == "" {
				from = "nobody"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "switchover of %s requested: %s hands over to %s\n", service, from, target)
			return nil
		},
	}
	registryFlag(cmd, &addrs)
	cmd.Flags().StringVar(&to, "to", "", "the standby to hand the role to (default: the best ranked)")
	cmd.Flags().BoolVar(&force, "force", false, "let --to take over although it lags the high-water mark (may lose writes)")
	return cmd
}

func newPauseCmd() *cobra.Command {
	var addrs []string
	cmd := &cobra.Command{
		Use:   "pause SERVICE",
		Short: "Stop automatic failover of SERVICE (maintenance) until resume",
		Long: `Stop all automatic failover actions for a service: while paused, no agent
promotes, demotes or resigns on its own, and no switchover can be
requested. A pending switchover is dropped. Pausing a paused service does
nothing.`,
		Example: "  understudy pause postgres",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return serviceRequest(cmd, addrs, a, func(ctx context.Context, cli pb.RegistryServiceClient, service string) (string, error) {
				_, err := cli.Pause(ctx, &pb.PauseRequest{Service: service})
				return fmt.Sprintf("%s paused: no automatic failover until \"understudy resume %s\"", service, service), err
			})
		},
	}
	registryFlag(cmd, &addrs)
	return cmd
}

func newResumeCmd() *cobra.Command {
	var addrs []string
	cmd := &cobra.Command{
		Use:     "resume SERVICE",
		Short:   "End a pause: automatic failover of SERVICE resumes",
		Example: "  understudy resume postgres",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return serviceRequest(cmd, addrs, a, func(ctx context.Context, cli pb.RegistryServiceClient, service string) (string, error) {
				_, err := cli.Resume(ctx, &pb.ResumeRequest{Service: service})
				return fmt.Sprintf("%s resumed: automatic failover is on", service), err
			})
		},
	}
	registryFlag(cmd, &addrs)
	return cmd
}

func newEventsCmd() *cobra.Command {
	var (
		addrs   []string
		limit   int
		jsonOut bool
	)
	cmd := &cobra.Command{
		Use:   "events SERVICE",
		Short: "Print the recent role changes of SERVICE, oldest first",
		Long: fmt.Sprintf(`Print the role changes of a service kept by the registry (%s), oldest
first, one per line: time, kind, host, epoch and reason.`, retention()),
		Example: "  understudy events postgres --limit 20\n  understudy events postgres --json",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			service, err := serviceArg(a)
			if err != nil {
				return err
			}
			if limit < 0 {
				return usage("--limit %d: want 0 (all) or more", limit)
			}
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			var resp *pb.ListEventsResponse
			err = firstAnswer(ctx, addrs, func(ctx context.Context, cli pb.RegistryServiceClient) (err error) {
				resp, err = cli.ListEvents(ctx, &pb.ListEventsRequest{Service: service, Limit: int32(min(limit, 1<<31-1))})
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, ev := range resp.GetEvents() {
				if jsonOut {
					b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ev)
					if err != nil {
						return err
					}
					fmt.Fprintln(out, string(b))
					continue
				}
				fmt.Fprintln(out, registry.FormatEvent(ev))
			}
			if len(resp.GetEvents()) == 0 && !jsonOut {
				fmt.Fprintf(cmd.ErrOrStderr(), "no events of %s in the last %s\n", service, retention())
			}
			return nil
		},
	}
	registryFlag(cmd, &addrs)
	cmd.Flags().IntVar(&limit, "limit", 0, "print only the newest N events (0: all)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print each event as one line of JSON")
	return cmd
}

// retention is eventlog.Retention for people: "7 days".
func retention() string {
	days := int(eventlog.Retention / (24 * time.Hour))
	return fmt.Sprintf("%d days", days)
}

// serviceRequest sends one request about the service named by the command's
// argument to the first registry that answers, and prints what it reports.
func serviceRequest(cmd *cobra.Command, addrs, a []string, call func(context.Context, pb.RegistryServiceClient, string) (string, error)) error {
	service, err := serviceArg(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var done string
	err = firstAnswer(ctx, addrs, func(ctx context.Context, cli pb.RegistryServiceClient) error {
		var err error
		done, err = call(ctx, cli, service)
		return err
	})
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintln(cmd.OutOrStdout(), done)
	return nil
}
