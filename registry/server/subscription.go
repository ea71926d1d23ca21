package server

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// Subscription receives the views of the services it watches. Changes that
// arrive faster than the subscriber reads them collapse to the latest view of
// each service (latest value wins), so a slow subscriber costs at most one
// pending view per service, never a queue.
type Subscription struct {
	hub    *Hub
	filter map[string]bool // nil: every service
	minRev int64           // views at or below this revision are already known to the subscriber

	mu      sync.Mutex
	pending map[string]*pb.View
	rev     int64         // revision up to which pending is complete
	notify  chan struct{} // capacity 1: "pending changed"
	closed  bool
}

func (s *Subscription) wants(service string) bool { return s.filter == nil || s.filter[service] }

// push adds one batch of views, all complete up to rev. restamp says the
// batch re-sends unchanged views with a new stale mark, which a resumed
// subscriber must see even though it knows their revision. The hub calls
// push with its own lock held; it never blocks.
func (s *Subscription) push(views []*pb.View, rev int64, restamp bool) {
	s.mu.Lock()
	added := false
	for _, v := range views {
		if !s.wants(v.GetService()) || (!restamp && v.GetRevision() <= s.minRev) {
			continue
		}
		s.pending[v.GetService()] = v
		added = true
	}
	if rev > s.rev {
		s.rev = rev
	}
	s.mu.Unlock()
	if added {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// Next blocks until views are pending, then returns them as watch messages,
// one per view, oldest first. Each message's revision is one the subscriber
// may resume from: every change up to it has been delivered by that message
// or an earlier one. Next returns ctx.Err() when ctx is done and
// ErrSubscriptionClosed after Close or when the hub stops.
func (s *Subscription) Next(ctx context.Context) ([]*pb.WatchResponse, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrSubscriptionClosed
		}
		if len(s.pending) > 0 {
			views := slices.Collect(maps.Values(s.pending))
			rev := s.rev
			clear(s.pending)
			s.mu.Unlock()
			return messages(views, rev), nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.notify:
		}
	}
}

// messages turns one drained set of views into watch messages. Sorted by
// revision, the message carrying view i is complete up to just before view
// i+1's revision: a later change to a service already sent would show up in
// pending again, and a resume from that point re-sends what is missing.
func messages(views []*pb.View, rev int64) []*pb.WatchResponse {
	sortViews(views)
	out := make([]*pb.WatchResponse, len(views))
	for i, v := range views {
		r := rev
		if i+1 < len(views) {
			r = min(rev, views[i+1].GetRevision()-1)
		}
		out[i] = &pb.WatchResponse{Revision: r, Views: []*pb.View{v}}
	}
	return out
}

// Close ends the subscription; a blocked Next returns. Safe to call more than once.
func (s *Subscription) Close() {
	s.hub.unsubscribe(s)
	s.close()
}

func (s *Subscription) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.notify)
	}
}

// sortViews orders views by revision, then service name, and returns them.
func sortViews(views []*pb.View) []*pb.View {
	slices.SortFunc(views, func(a, b *pb.View) int {
		return cmp.Or(cmp.Compare(a.GetRevision(), b.GetRevision()), cmp.Compare(a.GetService(), b.GetService()))
	})
	return views
}
