package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-dev/understudy/agent"
	"github.com/understudy-dev/understudy/agent/demoservice"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server"
)

// The dev environment: everything on loopback, in one process.
const (
	devClientURL = "http://127.0.0.1:2379"
	devPeerURL   = "http://127.0.0.1:2380"
	devGRPC      = "127.0.0.1:7420"
	devHTTP      = "127.0.0.1:7421"
)

var devHosts = []struct{ name, zone, http string }{
	{"dev-a", "dc1", "127.0.0.1:7431"}, {"dev-b", "dc2", "127.0.0.1:7432"}, {"dev-c", "cloud", "127.0.0.1:7433"},
}

// The demo services: a pool and a primary-mode service on every host.
const (
	devService   = "cache"
	devPrimaryDB = "db"
)

var devServiceNames = []string{devService, devPrimaryDB}

func newDevCmd() *cobra.Command {
	var dataDir, logLevel string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run etcd, the registry and three demo hosts in one process on loopback",
		Long: `Run a one-member etcd on 127.0.0.1:2379, the registry on 127.0.0.1:7420
(gRPC) and 127.0.0.1:7421 (HTTP), and three demo hosts dev-a (zone dc1),
dev-b (dc2) and dev-c (cloud), each running an agent that checks a demo TCP
service registered in the pool "cache".

Use "understudy dev fail HOST SERVICE" and "understudy dev heal HOST SERVICE"
from another terminal to make a demo service fail or recover its check.`,
		Args: args(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			if dataDir == "" {
				if dataDir, err = os.MkdirTemp("", "understudy-dev-"); err != nil {
					return err
				}
				defer os.RemoveAll(dataDir)
			}
			return runDev(dataDir, log)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "etcd data directory, kept after exit (default: a temporary one, removed)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.AddCommand(newDevActionCmd("fail"), newDevActionCmd("heal"))
	return cmd
}

// devServices are the demo services by "host/service".
type devServices map[string]*demoservice.Service

func (d devServices) routes(mux *http.ServeMux) {
	for _, action := range []string{"fail", "heal"} {
		mux.HandleFunc("POST /dev/"+action, func(w http.ResponseWriter, r *http.Request) {
			host, svc := r.URL.Query().Get("host"), r.URL.Query().Get("service")
			s, ok := d[host+"/"+svc]
			if !ok {
				http.Error(w, fmt.Sprintf("no demo service %q on host %q; there are %s on %s", svc, host, strings.Join(devServiceNames, " and "), devHostNames()), http.StatusNotFound)
				return
			}
			if action == "fail" {
				s.Fail()
			} else if err := s.Heal(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "%s on %s: %sed (listening: %v)\n", svc, host, action, s.Healthy())
		})
	}
}

func devHostNames() string {
	var names []string
	for _, h := range devHosts {
		names = append(names, h.name)
	}
	return strings.Join(names, ", ")
}

func runDev(dataDir string, log *slog.Logger) error {
	ctx, stop := signalContext()
	defer stop()

	services := devServices{}
	for _, h := range devHosts {
		for _, name := range devServiceNames {
			s, err := demoservice.Start(name+"@"+h.name, "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer s.Close()
			services[h.name+"/"+name] = s
		}
	}
	mc := server.MemberConfig{
		Name: "dev", Zone: "dc1", DataDir: dataDir,
		ListenClientURLs: []string{devClientURL}, AdvertiseClientURLs: []string{devClientURL},
		ListenPeerURLs: []string{devPeerURL}, AdvertisePeerURLs: []string{devPeerURL},
		InitialClusterState: "new", Profile: server.ProfileLAN,
	}
	srv, err := server.Start(server.Config{
		Member: &mc, GRPCAddr: devGRPC, HTTPAddr: devHTTP, Logger: log, HTTPRoutes: services.routes,
	})
	if err != nil {
		return fmt.Errorf("%w (is another understudy dev or etcd running on these ports?)", err)
	}
	defer srv.Close()

	agentCtx, stopAgents := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	rise, fall := 2, 2
	for _, h := range devHosts {
		cfg := &agent.Config{
			Host: h.name, Zone: h.zone, EtcdEndpoints: []string{devClientURL}, TTL: agent.D(3 * time.Second),
			HTTPAddr: h.http,
			Services: []agent.ServiceConfig{{
				Name: devService, Mode: agent.ModePool, Address: services[h.name+"/"+devService].Addr(),
				Tags: []string{"demo"}, Check: devCheck(&rise, &fall),
			}, {
				Name: devPrimaryDB, Mode: agent.ModePrimary, Address: services[h.name+"/"+devPrimaryDB].Addr(),
				Tags: []string{"demo"}, Check: devCheck(&rise, &fall),
				// The demo hooks only say what a real one would do.
				Hooks: agent.HooksConfig{
					Promote: []string{"sh", "-c", `echo "promote $UNDERSTUDY_SERVICE on $UNDERSTUDY_HOST at epoch $UNDERSTUDY_EPOCH (was: ${UNDERSTUDY_PREVIOUS_PRIMARY:-none}; $UNDERSTUDY_REASON)"`},
					Demote:  []string{"sh", "-c", `echo "demote $UNDERSTUDY_SERVICE on $UNDERSTUDY_HOST ($UNDERSTUDY_REASON)"`},
				},
			}},
		}
		a, err := agent.New(cfg, agent.Options{Logger: log})
		if err != nil {
			return err
		}
		wg.Go(func() { _ = a.Run(agentCtx) })
	}
	printDevBanner(os.Stdout, dataDir, services)

	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "understudy dev: stopping")
	case err := <-srv.MemberErr():
		return fmt.Errorf("etcd member failed: %w", err)
	}
	return nil
}

func devCheck(rise, fall *int) agent.CheckConfig {
	return agent.CheckConfig{TCP: "self", Interval: agent.D(200 * time.Millisecond), Timeout: agent.D(100 * time.Millisecond), Rise: rise, Fall: fall}
}

func printDevBanner(out io.Writer, dataDir string, services devServices) {
	fmt.Fprintf(out, `
understudy dev is running (Ctrl-C stops it)

  etcd member   dev (zone dc1)   client %s   data %s
  registry      gRPC %s   HTTP http://%s (/healthz /readyz /metrics /v1/services)
`, devClientURL, dataDir, devGRPC, devHTTP)
	for _, h := range devHosts {
		fmt.Fprintf(out, "  host %-8s zone %-6s %s at %s (pool), %s at %s (primary/standby), role endpoints http://%s\n",
			h.name, h.zone, devService, services[h.name+"/"+devService].Addr(),
			devPrimaryDB, services[h.name+"/"+devPrimaryDB].Addr(), h.http)
	}
	fmt.Fprintln(out, "  checks: tcp every 200ms, rise 2, fall 2; lease TTL 3s")
	fmt.Fprintf(out, `
Try, in another terminal:
  bin/understudy watch %[1]s                 # one line per change of the pool
  bin/understudy status                      # members, hosts, services
  bin/understudy dev fail dev-b %[1]s        # dev-b's %[1]s stops answering: critical within a second
  bin/understudy dev heal dev-b %[1]s
  bin/understudy watch %[5]s                    # the primary, its epoch, the standbys
  bin/understudy dev fail dev-a %[5]s           # if dev-a is primary: it resigns, a standby is promoted
  bin/understudy switchover %[5]s --to dev-c    # move the role by hand
  bin/understudy events %[5]s                   # the history of role changes
  curl -i http://%[6]s/primary/%[5]s       # 200 only on the acting primary (HAProxy-style check)
  bin/etcdctl --endpoints %[2]s get --prefix %[3]s
  curl -s http://%[4]s/v1/services

`, devService, devClientURL, registry.Prefix, devHTTP, devPrimaryDB, devHosts[0].http)
}

func newDevActionCmd(action string) *cobra.Command {
	var httpAddr string
	cmd := &cobra.Command{
		Use:   action + " HOST SERVICE",
		Short: map[string]string{"fail": "Make a demo service fail its check", "heal": "Make a demo service pass its check again"}[action],
		Args:  args(cobra.ExactArgs(2)),
		RunE: func(_ *cobra.Command, a []string) error {
			url := fmt.Sprintf("http://%s/dev/%s?host=%s&service=%s", httpAddr, action, a[0], a[1])
			resp, err := http.Post(url, "text/plain", nil)
			if err != nil {
				return fmt.Errorf("is understudy dev running? %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return usage("%s", strings.TrimSpace(string(body)))
			}
			fmt.Print(string(body))
			return nil
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http", devHTTP, "HTTP address of understudy dev")
	return cmd
}
