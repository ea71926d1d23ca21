package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// newBareHub is a hub with no etcd behind it, fed by the test through
// applyEvents.
func newBareHub() *Hub {
	cfg := HubConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.setDefaults()
	return &Hub{
		cfg: cfg, log: cfg.Logger, done: make(chan struct{}), ready: make(chan struct{}),
		state: registry.NewState(), modRevs: map[string]int64{}, views: map[string]*pb.View{},
		subs: map[*Subscription]struct{}{}, vouch: newVouchTracker(time.Now(), time.Millisecond),
	}
}

func put(key, value string, rev int64, lease clientv3.LeaseID) *clientv3.Event {
	return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), ModRevision: rev, Lease: int64(lease)}}
}

// A subscriber that resumed from a revision later than a view's own is
// still told when that view's primary turns unconfirmed: the mark changes
// with no new revision of the service.
func TestResumedSubscriberGetsMarkChanges(t *testing.T) {
	h := newBareHub()
	h.applySnapshot(nil, &etcdserverpb.ResponseHeader{Revision: 1, RaftTerm: 2}, false)
	time.Sleep(2 * time.Millisecond) // past the slack after the start
	h.applyEvents([]*clientv3.Event{
		put(registry.InstanceKey("h1", "db"), registry.MustEncode(&pb.Instance{Host: "h1", Service: "db", Address: "a:1", Mode: pb.Mode_MODE_PRIMARY, Health: pb.Health_HEALTH_PASSING}), 2, 9),
		put(registry.PrimaryKey("db"), registry.MustEncode(&pb.Primary{Host: "h1", Address: "a:1", Epoch: 2}), 3, 9),
	}, &etcdserverpb.ResponseHeader{Revision: 3, RaftTerm: 2})
	// An unrelated change moves the revision past db's.
	h.applyEvents([]*clientv3.Event{
		put(registry.InstanceKey("h2", "mc"), registry.MustEncode(&pb.Instance{Host: "h2", Service: "mc", Address: "b:1", Mode: pb.Mode_MODE_POOL, Health: pb.Health_HEALTH_PASSING}), 4, 0),
	}, &etcdserverpb.ResponseHeader{Revision: 4, RaftTerm: 2})
	if v := h.View("db"); v.GetUnconfirmed() || v.GetStatus() != pb.Status_STATUS_READ_WRITE {
		t.Fatalf("db before the leader change: %v, want a confirmed READ_WRITE primary", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, first, err := h.Subscribe(ctx, []string{"db"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if first.GetSnapshot() {
		t.Fatal("the subscriber got a snapshot, want a resume from revision 4")
	}
	// A leader change seen in the next watch response: nobody was seen
	// renewing the lease, so db's primary turns unconfirmed at revision 3.
	h.applyEvents([]*clientv3.Event{
		put(registry.InstanceKey("h2", "mc"), registry.MustEncode(&pb.Instance{Host: "h2", Service: "mc", Address: "b:2", Mode: pb.Mode_MODE_POOL, Health: pb.Health_HEALTH_PASSING}), 5, 0),
	}, &etcdserverpb.ResponseHeader{Revision: 5, RaftTerm: 3})
	msgs, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got *pb.View
	for _, m := range msgs {
		for _, v := range m.GetViews() {
			if v.GetService() == "db" {
				got = v
			}
		}
	}
	if !got.GetUnconfirmed() || got.GetStatus() == pb.Status_STATUS_READ_WRITE {
		t.Errorf("db after the leader change, as the resumed subscriber got it: %v; want unconfirmed, not READ_WRITE", got)
	}
}
