package server

import (
	"context"
	"fmt"
	"time"

	"github.com/understudy-dev/understudy/registry/topology"
)

// Timing of the topology check at start: the other members record their
// zones as they come up, so the check looks again every topologyPoll until
// every voting member has a record, and after topologyPatience goes ahead
// with what it has (members without a record count as zone unknown).
const (
	topologyPoll     = 500 * time.Millisecond
	topologyPatience = 30 * time.Second
)

// warnTopology logs, once after start, which single-zone losses the etcd
// cluster survives: one WARN line per warning of topology.Compute, prefixed
// "etcd topology:", and its notes at INFO. A one-member cluster is a
// deliberate choice (dev, tests), so its warnings are logged at INFO too.
// It gives up quietly when ctx ends and at WARN when the member list cannot
// be read within topologyPatience; it never blocks Start.
func (s *Server) warnTopology(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-s.hub.Ready():
	}
	deadline := time.Now().Add(topologyPatience)
	for {
		members, complete, err := s.topologyMembers(ctx)
		if ctx.Err() != nil {
			return
		}
		late := time.Now().After(deadline)
		switch {
		case err == nil && (complete || late):
			s.logTopology(topology.Compute(members))
			return
		case late:
			s.log.Warn("etcd topology: cannot list the etcd members to check which zone losses the cluster survives", "err", err)
			return
		}
		sleepCtx(ctx, topologyPoll)
	}
}

// topologyMembers lists the etcd members with the zones recorded under
// registry.MembersPrefix (as the hub last read them). complete reports that
// every voting member has started and written its record.
func (s *Server) topologyMembers(ctx context.Context) (_ []topology.Member, complete bool, _ error) {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	list, err := s.client.MemberList(lctx)
	if err != nil {
		return nil, false, err
	}
	complete = true
	members := make([]topology.Member, 0, len(list.Members))
	for _, m := range list.Members {
		tm := topology.Member{Name: m.Name, Learner: m.IsLearner}
		if tm.Name == "" {
			tm.Name = fmt.Sprintf("%x", m.ID) // added, not started yet
		}
		rec := s.hub.Member(m.Name)
		if rec != nil {
			tm.Zone = rec.GetZone()
		}
		if !m.IsLearner && (m.Name == "" || rec == nil) {
			complete = false
		}
		members = append(members, tm)
	}
	return members, complete, nil
}

func (s *Server) logTopology(r topology.Report) {
	survivable, zones := r.ZoneLosses()
	s.log.Info("etcd topology", "voters", r.Voters, "quorum", r.Quorum,
		"survivable_zone_losses", fmt.Sprintf("%d of %d", survivable, zones))
	warn := s.log.Warn
	if r.Voters == 1 {
		warn = s.log.Info
	}
	for _, w := range r.Warnings {
		warn("etcd topology: " + w)
	}
	for _, n := range r.Notes {
		s.log.Info("etcd topology: " + n)
	}
}
