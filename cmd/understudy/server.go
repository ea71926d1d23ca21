package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/understudy-dev/understudy/registry/server"
)

func newServerCmd() *cobra.Command {
	mc := server.DefaultMemberConfig()
	var (
		etcdEndpoints      []string
		grpcAddr, httpAddr string
		logLevel           string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run an embedded etcd member with the registry API (or front an etcd cluster with --etcd-endpoints)",
		Long: `Run one registry server: an embedded etcd member plus the RegistryService
gRPC API and an HTTP port (/healthz, /readyz, /metrics, /v1/services).

URL flags accept go-sockaddr templates, e.g. http://{{ GetPrivateIP }}:2380.
With --etcd-endpoints no member runs: the server fronts an existing cluster.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg := server.Config{GRPCAddr: grpcAddr, HTTPAddr: httpAddr, Logger: log}
			if len(etcdEndpoints) > 0 {
				cfg.EtcdEndpoints = etcdEndpoints
			} else {
				if !cmd.Flags().Changed("data-dir") {
					mc.DataDir = mc.Name + ".etcd"
				}
				if !cmd.Flags().Changed("advertise-client-urls") {
					mc.AdvertiseClientURLs = mc.ListenClientURLs
				}
				if !cmd.Flags().Changed("advertise-peer-urls") {
					mc.AdvertisePeerURLs = mc.ListenPeerURLs
				}
				cfg.Member = &mc
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			ctx, stop := signalContext()
			defer stop()
			srv, err := server.Start(cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			log.Info("understudy server running", "grpc", srv.GRPCAddr(), "http", srv.HTTPAddr(), "member", mc.Name, "zone", mc.Zone)
			select {
			case <-ctx.Done():
				log.Info("shutting down")
				return nil
			case err := <-srv.MemberErr():
				return fmt.Errorf("etcd member failed: %w", err)
			}
		},
	}
	f := cmd.Flags()
	host, _ := os.Hostname()
	f.StringVar(&mc.Name, "name", host, "member name, unique in the cluster")
	f.StringVar(&mc.Zone, "zone", "", "failure domain of this member (dc1, cloud-a, ...)")
	f.StringVar(&mc.DataDir, "data-dir", "", "etcd data directory (default NAME.etcd)")
	urlListVar(f, &mc.ListenClientURLs, "listen-client-urls", mc.ListenClientURLs, "URLs etcd serves clients on")
	urlListVar(f, &mc.AdvertiseClientURLs, "advertise-client-urls", nil, "client URLs told to others (default: listen-client-urls)")
	urlListVar(f, &mc.ListenPeerURLs, "listen-peer-urls", mc.ListenPeerURLs, "URLs etcd serves peers on")
	urlListVar(f, &mc.AdvertisePeerURLs, "advertise-peer-urls", nil, "peer URLs told to others (default: listen-peer-urls)")
	f.StringVar(&mc.InitialCluster, "initial-cluster", "", "name=peerURL,... of every founding member (default: this member alone)")
	f.StringVar(&mc.InitialClusterState, "initial-cluster-state", "new", "new to bootstrap, existing to join a running cluster")
	f.StringVar(&mc.InitialClusterToken, "initial-cluster-token", "understudy", "keeps separate clusters apart")
	f.StringVar(&mc.Profile, "profile", server.ProfileLAN, "timing profile: lan (heartbeat 100ms, election 1s) or wan")
	urlListVar(f, &etcdEndpoints, "etcd-endpoints", nil, "front this etcd cluster instead of running a member")
	f.StringVar(&grpcAddr, "grpc-addr", ":7420", "RegistryService gRPC address")
	f.StringVar(&httpAddr, "http-addr", ":7421", "HTTP address: /healthz /readyz /metrics /v1/services")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
