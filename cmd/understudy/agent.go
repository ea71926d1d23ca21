package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/understudy-dev/understudy/agent"
)

func newAgentCmd() *cobra.Command {
	var configPath, logLevel string
	cmd := &cobra.Command{
		Use:   "agent --config FILE",
		Short: "Health-check this host's services and register them in the registry",
		Args:  args(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			if configPath == "" {
				return usage("--config is required")
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg, err := agent.LoadConfig(configPath)
			if err != nil {
				return usageError{err}
			}
			agent.Version = version
			// The guard is this same binary, started apart so that it
			// outlives the agent: it demotes the services should the agent
			// freeze or die.
			self, err := os.Executable()
			if err != nil {
				return err
			}
			a, err := agent.New(cfg, agent.Options{Logger: log, GuardCommand: []string{self, "guard"}})
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext()
			defer stop()
			log.Info("understudy agent running", "host", cfg.Host, "zone", cfg.Zone, "services", len(cfg.Services))
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "agent configuration file (YAML)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
