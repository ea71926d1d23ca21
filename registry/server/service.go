package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// readyWait bounds how long a request waits for the hub's first read.
const readyWait = 5 * time.Second

// service implements pb.RegistryServiceServer on top of a Hub.
type service struct {
	pb.UnimplementedRegistryServiceServer
	hub    *Hub
	client *clientv3.Client
	log    *slog.Logger
}

func validateServices(names []string) error {
	for i, name := range names {
		if err := registry.ValidateName(fmt.Sprintf("services[%d]", i), name); err != nil {
			return err
		}
	}
	return nil
}

func (s *service) Watch(req *pb.WatchRequest, stream pb.RegistryService_WatchServer) error {
	if err := validateServices(req.GetServices()); err != nil {
		return toStatus(err)
	}
	if req.GetFromRevision() < 0 {
		return toStatus(fmt.Errorf("%w: from_revision is negative", registry.ErrInvalidName))
	}
	ctx := stream.Context()
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	sub, first, err := s.hub.Subscribe(wctx, req.GetServices(), req.GetFromRevision())
	cancel()
	if err != nil {
		return toStatus(err)
	}
	defer sub.Close()
	if err := stream.Send(first); err != nil {
		return err
	}
	metricWatchMessages.Inc()
	for {
		msgs, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the subscriber went away
			}
			return toStatus(err)
		}
		for _, m := range msgs {
			if err := stream.Send(m); err != nil {
				return err
			}
			metricWatchMessages.Inc()
		}
	}
}

func (s *service) waitReady(ctx context.Context) error {
	select {
	case <-s.hub.Ready():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
	case <-time.After(readyWait):
		return ErrNotReady
	}
}

func (s *service) GetService(ctx context.Context, req *pb.GetServiceRequest) (*pb.GetServiceResponse, error) {
	if err := registry.ValidateName("service", req.GetService()); err != nil {
		return nil, toStatus(err)
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, toStatus(err)
	}
	v := s.hub.View(req.GetService())
	if v == nil {
		return nil, toStatus(fmt.Errorf("%w %q: no instance is registered", ErrUnknownService, req.GetService()))
	}
	return &pb.GetServiceResponse{View: v}, nil
}

func (s *service) ListServices(ctx context.Context, _ *pb.ListServicesRequest) (*pb.ListServicesResponse, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, toStatus(err)
	}
	views, rev := s.hub.Views()
	return &pb.ListServicesResponse{Views: views, Revision: rev}, nil
}

// ClusterStatus asks etcd for its members and each member for its status.
// Without a quorum the member list comes from a serializable read of the
// local member and the answer is marked stale.
func (s *service) ClusterStatus(ctx context.Context, _ *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ClusterStatusResponse{Hosts: s.hub.Hosts()}
	_, resp.Revision = s.hub.Views()
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	list, err := s.client.MemberList(lctx)
	cancel()
	if err != nil {
		resp.Stale = true
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		list, err = s.client.MemberList(lctx, clientv3.WithSerializable())
		cancel()
		if err != nil {
			return nil, toStatus(fmt.Errorf("%w: listing etcd members: %w", ErrNotReady, err))
		}
	}
	resp.Members = make([]*pb.MemberStatus, len(list.Members))
	var wg sync.WaitGroup
	for i, m := range list.Members {
		ms := &pb.MemberStatus{
			Name: m.Name, Id: m.ID, ClientUrls: m.ClientURLs, PeerUrls: m.PeerURLs, IsLearner: m.IsLearner,
		}
		if rec := s.hub.Member(m.Name); rec != nil {
			ms.Zone = rec.GetZone()
		}
		resp.Members[i] = ms
		if len(m.ClientURLs) == 0 {
			ms.Error = "not started yet"
			continue
		}
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := s.client.Status(sctx, m.ClientURLs[0])
			if err != nil {
				ms.Error = err.Error()
				return
			}
			ms.Reachable = true
			ms.Version = st.Version
			ms.IsLeader = st.Leader == m.ID
		})
	}
	wg.Wait()
	voters, reachable := 0, 0
	for _, m := range resp.Members {
		if m.IsLeader {
			resp.Leader = m.Name
		}
		if !m.IsLearner {
			voters++
			if m.Reachable {
				reachable++
			}
		}
	}
	resp.Quorum = resp.Leader != "" && reachable > voters/2
	slices.SortFunc(resp.Members, func(a, b *pb.MemberStatus) int { return cmpString(a.Name, b.Name) })
	return resp, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
