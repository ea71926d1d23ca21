package main

import (
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-dev/understudy/agent/guard"
)

// defaultGuardSocket is where agents and guards meet unless told otherwise.
const defaultGuardSocket = "/run/understudy/guard.sock"

func newGuardCmd() *cobra.Command {
	var (
		cfg      guard.Config
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "guard [--socket PATH] [--watchdog /dev/watchdog --watchdog-timeout 10s]",
		Short: "Demote this host's primaries by their fence points should the agent stop renewing them",
		Long: `Run the guard: a small process apart from the agent that the agent feeds,
after every lease renewal, with the fence point of each service it is primary
of. If the feeding stops (the agent is frozen, deadlocked or killed), the guard
runs the service's demote hook itself by that fence point, so that a standby
promoted elsewhere after the lease expires is never a second writable primary.

Start it from a unit of its own, or let the agent start it when none answers
on the socket: it then runs in a session of its own, outlives the agent, and a
restarted agent finds the same guard again. Stopped with SIGTERM while services
are armed, the guard demotes them before it exits.

With --watchdog, the guard also holds the kernel's watchdog device while
services are armed, and stops petting it once a fence point passed without a
successful demote: the kernel then resets the host.`,
		Args: args(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			if cfg.Socket == "" {
				return usage("--socket: want a path")
			}
			if cfg.Watchdog != "" && cfg.WatchdogTimeout < time.Second {
				return usage("--watchdog-timeout %v: want at least 1s", cfg.WatchdogTimeout)
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			// A closed terminal or log reader must not kill the guard
			// without its demotes: only SIGTERM and SIGINT stop it, gracefully.
			signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
			ctx, stop := signalContext()
			defer stop()
			return guard.Serve(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.Socket, "socket", defaultGuardSocket, "unix socket the agent feeds the guard on")
	cmd.Flags().StringVar(&cfg.Watchdog, "watchdog", "", "watchdog device to hold while services are armed (e.g. /dev/watchdog)")
	cmd.Flags().DurationVar(&cfg.WatchdogTimeout, "watchdog-timeout", guard.DefaultWatchdogTimeout, "timeout set on the watchdog device")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
