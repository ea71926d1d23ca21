package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// Config configures a registry server.
type Config struct {
	// Member runs an embedded etcd member. Nil means EtcdEndpoints is used.
	Member *MemberConfig
	// EtcdEndpoints fronts an existing etcd cluster instead of running a member.
	EtcdEndpoints []string
	// GRPCAddr is where the RegistryService listens. Default ":7420".
	GRPCAddr string
	// HTTPAddr serves /healthz, /readyz, /metrics and /v1/. Default ":7421".
	HTTPAddr string
	// StartTimeout bounds how long the embedded member may take to join. Default 60s.
	StartTimeout time.Duration
	Hub          HubConfig
	Logger       *slog.Logger
	// HTTPRoutes, when set, adds routes to the HTTP port (used by `understudy dev`).
	HTTPRoutes func(*http.ServeMux)
}

// Validate checks the configuration, naming the offending field.
func (c *Config) Validate() error {
	switch {
	case c.Member == nil && len(c.EtcdEndpoints) == 0:
		return errors.New("etcd-endpoints is empty and no embedded member is configured")
	case c.Member != nil && len(c.EtcdEndpoints) > 0:
		return errors.New("etcd-endpoints and an embedded member exclude each other")
	case c.Member != nil:
		return c.Member.Validate()
	}
	return nil
}

// Server is a running registry server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	member *Member
	client *clientv3.Client
	hub    *Hub
	grpc   *grpc.Server
	health *health.Server
	http   *http.Server
	grpcLn net.Listener
	httpLn net.Listener

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Start starts the embedded member (if any), connects to etcd, loads the
// views and starts serving gRPC and HTTP. It returns once both ports listen;
// requests wait for the first read of the keyspace.
func Start(cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = ":7420"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":7421"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Hub.Logger = cfg.Logger
	s := &Server{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	endpoints := cfg.EtcdEndpoints
	if cfg.Member != nil {
		if s.member, err = StartMember(*cfg.Member, cfg.StartTimeout); err != nil {
			return nil, err
		}
		endpoints = s.member.ClientURLs()
	}
	s.client, err = clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc-addr: %w", err)
	}
	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http-addr: %w", err)
	}
	s.hub = NewHub(s.client, cfg.Hub)

	s.grpc = grpc.NewServer()
	pb.RegisterRegistryServiceServer(s.grpc, &service{hub: s.hub, client: s.client, log: s.log})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	mux := s.httpHandler()
	if cfg.HTTPRoutes != nil {
		cfg.HTTPRoutes(mux)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { _ = s.grpc.Serve(s.grpcLn) })
	s.wg.Go(func() { _ = s.http.Serve(s.httpLn) })
	s.wg.Go(func() { s.trackHealth(ctx) })
	if s.member != nil {
		s.wg.Go(func() { s.recordMember(ctx) })
		s.wg.Go(func() { s.warnTopology(ctx) })
	}
	return s, nil
}

// trackHealth keeps the gRPC health service in step with the hub: SERVING
// once views are loaded and current, NOT_SERVING while stale.
func (s *Server) trackHealth(ctx context.Context) {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		select {
		case <-s.hub.Ready():
			if !s.hub.Stale() {
				st = healthpb.HealthCheckResponse_SERVING
			}
		default:
		}
		s.health.SetServingStatus("", st)
		s.health.SetServingStatus(pb.RegistryService_ServiceDesc.ServiceName, st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recordMember writes this member's zone and URLs so that ClusterStatus can
// show them, retrying until etcd has a quorum.
func (s *Server) recordMember(ctx context.Context) {
	rec := registry.MustEncode(&pb.Member{
		Name: s.member.Name(), Zone: s.member.Zone(),
		ClientUrls: s.member.ClientURLs(), PeerUrls: s.member.PeerURLs(),
	})
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.client.Put(pctx, registry.MemberKey(s.member.Name()), rec)
		cancel()
		if err == nil {
			return
		}
		sleepCtx(ctx, time.Second)
	}
}

// GRPCAddr is the address the gRPC API listens on.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// HTTPAddr is the address the HTTP port listens on.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// Client is the server's etcd client.
func (s *Server) Client() *clientv3.Client { return s.client }

// Hub is the server's view hub.
func (s *Server) Hub() *Hub { return s.hub }

// Member is the embedded member, nil when fronting an external cluster.
func (s *Server) Member() *Member { return s.member }

// MemberErr reports a fatal error of the embedded member; nil channel without one.
func (s *Server) MemberErr() <-chan error {
	if s.member == nil {
		return nil
	}
	return s.member.Err()
}

// Close shuts the server down. Safe to call more than once. In order:
//  1. mark the gRPC health service NOT_SERVING so balancers move away;
//  2. stop the hub, which ends every Watch stream;
//  3. stop gRPC (gracefully, at most 5 s) and HTTP;
//  4. close the etcd client, then the embedded member.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.health != nil {
			s.health.Shutdown()
		}
		if s.cancel != nil {
			s.cancel()
		}
		if s.hub != nil {
			s.hub.Stop()
		}
		if s.grpc != nil {
			stopped := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				s.grpc.Stop()
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
		}
		for _, ln := range []net.Listener{s.grpcLn, s.httpLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		s.wg.Wait()
		if s.client != nil {
			_ = s.client.Close()
		}
		if s.member != nil {
			s.member.Close()
		}
	})
}
