package eventlog_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/eventlog"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func write(t *testing.T, cli *clientv3.Client, ev *pb.Event, rev int64) {
	t.Helper()
	if err := eventlog.Write(ctx(t), cli, ev, rev); err != nil {
		t.Fatalf("Write(%v @%d): %v", ev, rev, err)
	}
}

func list(t *testing.T, cli *clientv3.Client, service string, limit int) []*pb.Event {
	t.Helper()
	evs, err := eventlog.List(ctx(t), cli, service, limit)
	if err != nil {
		t.Fatalf("List(%s, %d): %v", service, limit, err)
	}
	return evs
}

func revisions(evs []*pb.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.GetRevision())
	}
	return out
}

// Events come back oldest first whatever order they were written in, with
// the revision they were written at, a time (the caller's, or the time of
// writing), and nothing of another service whose name shares a prefix.
func TestWriteThenList(t *testing.T) {
	cli := servertest.StartCluster(t, 1).Client(t)
	at := timestamppb.New(time.Date(2025, 3, 1, 14, 2, 11, 0, time.UTC))
	promoted := &pb.Event{Service: "postgres", Kind: pb.EventKind_EVENT_KIND_PROMOTED, Host: "ol-db1", Epoch: 40, Reason: "lease expired", At: at}
	orig := proto.CloneOf(promoted)
	before := time.Now()
	write(t, cli, promoted, 40)
	write(t, cli, &pb.Event{Service: "postgres", Kind: pb.EventKind_EVENT_KIND_DEMOTED, Host: "ol-db0", Epoch: 12, Reason: "check failed"}, 39)
	write(t, cli, &pb.Event{Service: "postgres", Kind: pb.EventKind_EVENT_KIND_PAUSED}, 100)
	write(t, cli, &pb.Event{Service: "postgres2", Kind: pb.EventKind_EVENT_KIND_PAUSED}, 41)
	after := time.Now()

	if diff := cmp.Diff(orig, promoted, protocmp.Transform()); diff != "" {
		t.Errorf("Write modified its event (-before +after):\n%s", diff)
	}
	got := list(t, cli, "postgres", 0)
	if want := []int64{39, 40, 100}; !slices.Equal(revisions(got), want) {
		t.Fatalf("List revisions %v, want %v", revisions(got), want)
	}
	want := proto.CloneOf(orig)
	want.Revision = 40
	if diff := cmp.Diff(want, got[1], protocmp.Transform()); diff != "" {
		t.Errorf("stored event (-want +got):\n%s", diff)
	}
	for _, ev := range []*pb.Event{got[0], got[2]} {
		if at := ev.GetAt().AsTime(); at.Before(before.Add(-time.Second)) || at.After(after.Add(time.Second)) {
			t.Errorf("event @%d without a time got At %v, want the time of writing (%v..%v)", ev.GetRevision(), at, before, after)
		}
	}
	if got := list(t, cli, "postgres2", 0); !slices.Equal(revisions(got), []int64{41}) {
		t.Errorf("List(postgres2) revisions %v, want [41]", revisions(got))
	}
	if got := list(t, cli, "solr", 0); len(got) != 0 {
		t.Errorf("List(solr) = %v, want none", got)
	}
}

// With a limit, List returns the newest events, still oldest first, and
// skips what it cannot read without returning fewer than it could.
func TestListLimitSkipsCorruptValues(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	for rev := int64(1); rev <= 5; rev++ {
		write(t, cli, &pb.Event{Service: "postgres", Kind: pb.EventKind_EVENT_KIND_PROMOTED, Epoch: rev}, rev)
	}
	for _, key := range []string{registry.EventKey("postgres", 6), registry.EventKey("postgres", 7)} {
		if _, err := cli.Put(ctx(t), key, "not json"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx(t), registry.EventsPrefix("postgres")+"zzz", "{}"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		limit int
		want  []int64
	}{
		{0, []int64{1, 2, 3, 4, 5}},
		{-1, []int64{1, 2, 3, 4, 5}},
		{1, []int64{5}},
		{3, []int64{3, 4, 5}},
		{5, []int64{1, 2, 3, 4, 5}},
		{50, []int64{1, 2, 3, 4, 5}},
	}
	for _, tt := range tests {
		if got := revisions(list(t, cli, "postgres", tt.limit)); !slices.Equal(got, tt.want) {
			t.Errorf("List(limit %d) revisions %v, want %v", tt.limit, got, tt.want)
		}
	}
}

// Each event sits on a lease of its own granted for Retention, so etcd
// prunes history by itself.
func TestWriteBindsEventToRetentionLease(t *testing.T) {
	cli := servertest.StartCluster(t, 1).Client(t)
	write(t, cli, &pb.Event{Service: "postgres", Kind: pb.EventKind_EVENT_KIND_FENCED}, 7)
	write(t, cli, &pb.Event{Service: "postgres", Kind: pb.EventKind_EVENT_KIND_PROMOTED}, 8)

	resp, err := cli.Get(ctx(t), registry.EventsPrefix("postgres"), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2 {
		t.Fatalf("%d event keys, want 2", len(resp.Kvs))
	}
	if resp.Kvs[0].Lease == 0 || resp.Kvs[0].Lease == resp.Kvs[1].Lease {
		t.Errorf("event leases %x and %x, want two distinct leases", resp.Kvs[0].Lease, resp.Kvs[1].Lease)
	}
	ttl, err := cli.TimeToLive(ctx(t), clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(eventlog.Retention / time.Second); ttl.GrantedTTL != want {
		t.Errorf("lease granted for %ds, want %ds", ttl.GrantedTTL, want)
	}
}

func TestWriteAndListRejectBadInput(t *testing.T) {
	cli := servertest.StartCluster(t, 1).Client(t)
	bad := []struct {
		name string
		ev   *pb.Event
		rev  int64
	}{
		{"no service", &pb.Event{Kind: pb.EventKind_EVENT_KIND_PAUSED}, 1},
		{"bad service", &pb.Event{Service: "a/b"}, 1},
		{"zero revision", &pb.Event{Service: "postgres"}, 0},
		{"negative revision", &pb.Event{Service: "postgres"}, -3},
	}
	for _, tt := range bad {
		if err := eventlog.Write(ctx(t), cli, tt.ev, tt.rev); err == nil {
			t.Errorf("Write(%s) = nil, want an error", tt.name)
		}
	}
	if _, err := eventlog.List(ctx(t), cli, "a/b", 0); err == nil {
		t.Errorf("List(a/b) = nil error, want an error")
	}
	if got := list(t, cli, "postgres", 0); len(got) != 0 {
		t.Errorf("events after rejected writes: %v, want none", got)
	}
}
