package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/understudy-dev/understudy/registry/feed"
	"github.com/understudy-dev/understudy/registry/render"
)

func newRenderCmd() *cobra.Command {
	var (
		addrs    []string
		cfg      = render.DefaultConfig()
		once     bool
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "render --template FILE --out FILE [--exec CMD]",
		Short: "Keep a file rendered from a template over the registry's views, running a reload command on change",
		Long: `Render a Go text/template over the registry's views into --out, and again
after every change (a burst of changes within --debounce renders once).
The file is rewritten atomically, keeping its permissions, and only when its
content changes; then --exec runs with sh -c (its failure is logged).

While no registry answers nothing is rendered: the file keeps its last good
content for the whole outage. A service that has no healthy member while the
registry answers is rendered as such. A template that fails keeps the last
good file and is logged.

Helpers: primary "pg" (.Host .Address .Epoch .AddrHost .AddrPort, nil when
none), members "memcached" (healthy instances, by host), standbys "pg",
instances "x", healthy LIST, epoch "pg", status "pg", service "pg",
addresses LIST, join SEP LIST, split SEP S, json V, fail MSG (keeps the last
file). Examples: deploy/examples/*.tmpl.`,
		Example: `  understudy render --template app.yaml.tmpl --out /etc/app/services.yaml --exec 'systemctl reload app'
  understudy render --template haproxy.cfg.tmpl --out /etc/haproxy/haproxy.cfg --exec 'systemctl reload haproxy' --registry 10.0.0.1:7420,10.0.0.2:7420
  understudy render --template app.yaml.tmpl --out services.yaml --once`,
		Args: args(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			switch {
			case cfg.Template == "":
				return usage("--template is required")
			case cfg.Out == "":
				return usage("--out is required")
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			r, err := render.New(cfg)
			if err != nil {
				return usageError{err}
			}
			fc := feed.Config{Addrs: addrs}
			if once {
				ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
				defer cancel()
				return r.Once(ctx, fc)
			}
			ctx, stop := signalContext()
			defer stop()
			if err := r.Run(ctx, fc); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	registryFlag(cmd, &addrs)
	f := cmd.Flags()
	f.StringVar(&cfg.Template, "template", "", "Go text/template file")
	f.StringVar(&cfg.Out, "out", "", "file to keep rendered (replaced atomically)")
	f.StringVar(&cfg.Exec, "exec", "", "command run with sh -c after each write, e.g. a reload")
	f.DurationVar(&cfg.ExecTimeout, "exec-timeout", cfg.ExecTimeout, "kill --exec after this long")
	f.DurationVar(&cfg.Debounce, "debounce", cfg.Debounce, "render once no change arrived for this long (at most 4× this after the first)")
	f.BoolVar(&once, "once", false, "render the current state once and exit (status 1 when no registry answers)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
