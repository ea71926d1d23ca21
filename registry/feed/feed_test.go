package feed_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/feed"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }

// recorder keeps what Follow reported, in order: messages and errors.
type recorder struct {
	mu     sync.Mutex
	msgs   []*pb.WatchResponse
	errs   []string // "addr -> next"
	after  []int    // len(msgs) when each error was reported
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) handle(m *pb.WatchResponse) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) onError(addr string, _ error, next string) {
	r.mu.Lock()
	r.errs = append(r.errs, addr+" -> "+next)
	r.after = append(r.after, len(r.msgs))
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// wait polls ok under the lock until it holds.
func (r *recorder) wait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		done := ok()
		r.mu.Unlock()
		if done {
			return
		}
		select {
		case <-r.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waiting for %s: not within 10s", what)
		}
	}
}

func put(t *testing.T, cli *clientv3.Client, in *pb.Instance) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, registry.InstanceKey(in.GetHost(), in.GetService()), registry.MustEncode(in))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func cache(host string) *pb.Instance {
	return &pb.Instance{Host: host, Service: "cache", Zone: "z1", Address: host + ":11211", Mode: pb.Mode_MODE_POOL, Health: pb.Health_HEALTH_PASSING}
}

// When its stream breaks, Follow moves on to the next address and resumes
// there: no second snapshot, and the change made meanwhile arrives. (The
// first address is a gate to the server that closes: a server that really
// dies may cost the others their etcd leader for a moment, and a registry
// without a quorum answers a resume with a snapshot, as it may.)
func TestFollowMovesOnAndResumes(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	put(t, cli, cache("h1"))
	gate := servertest.NewGate(t, c.Servers[0].GRPCAddr())
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := feed.Config{
		Addrs:      []string{gate.Addr(), c.Servers[0].GRPCAddr()},
		RetryPause: 50 * time.Millisecond,
		OnError:    r.onError,
	}
	go func() { done <- feed.Follow(ctx, cfg, r.handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow returned %v after its context ended, want nil", err)
		}
	})
	r.wait(t, "snapshot", func() bool { return len(r.msgs) > 0 })
	if !r.msgs[0].GetSnapshot() {
		t.Fatalf("first message is not a snapshot: %v", r.msgs[0])
	}

	gate.Off()
	r.wait(t, "the stream through the gate to break", func() bool { return len(r.errs) > 0 })
	rev := put(t, cli, cache("h2"))
	r.wait(t, "h2 through the second address", func() bool {
		var v feed.Views
		for _, m := range r.msgs {
			v.Apply(m)
		}
		return len(v.Get("cache").GetInstances()) == 2 && v.Revision() >= rev
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if want := cfg.Addrs[0] + " -> " + cfg.Addrs[1]; r.errs[0] != want {
		t.Errorf("first error reported %q, want %q", r.errs[0], want)
	}
	for i, m := range r.msgs[r.after[0]:] {
		if m.GetSnapshot() {
			t.Errorf("message %d after the move is a snapshot, want a resume", r.after[0]+i)
		}
	}
}

// With Rounds set, Follow gives up once every address failed that many
// times in a row, naming each; a malformed request ends it at once.
func TestFollowGivesUp(t *testing.T) {
	t.Run("no registry", func(t *testing.T) {
		r := newRecorder()
		cfg := feed.Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, Rounds: 2, RetryPause: 10 * time.Millisecond, OnError: r.onError}
		err := feed.Follow(context.Background(), cfg, r.handle)
		if !errors.Is(err, feed.ErrNoRegistry) || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "127.0.0.1:2") {
			t.Errorf("Follow = %v, want ErrNoRegistry naming both addresses", err)
		}
		if len(r.errs) != 3 {
			t.Errorf("OnError told %d times (%v), want 3: every failure but the last", len(r.errs), r.errs)
		}
	})
	t.Run("malformed service", func(t *testing.T) {
		c := servertest.StartCluster(t, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := feed.Follow(ctx, feed.Config{Addrs: []string{c.Servers[0].GRPCAddr()}, Services: []string{"bad/name"}}, func(*pb.WatchResponse) {})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Follow = %v, want InvalidArgument", err)
		}
	})
}

func TestViewsApply(t *testing.T) {
	view := func(service string, rev int64, hosts ...string) *pb.View {
		v := &pb.View{Service: service, Revision: rev}
		for _, h := range hosts {
			v.Instances = append(v.Instances, &pb.Instance{Host: h})
		}
		return v
	}
	var v feed.Views
	if v.Complete() || len(v.All()) != 0 {
		t.Fatal("zero Views is not empty")
	}
	steps := []struct {
		msg      *pb.WatchResponse
		want     []string // services
		complete bool
	}{
		{&pb.WatchResponse{Revision: 3, Views: []*pb.View{view("a", 3, "h1")}}, []string{"a"}, false},
		{&pb.WatchResponse{Revision: 5, Snapshot: true, Views: []*pb.View{view("b", 4, "h1"), view("c", 5, "h1")}}, []string{"b", "c"}, true},
		{&pb.WatchResponse{Revision: 6, Views: []*pb.View{view("c", 6)}}, []string{"b"}, true},
		{&pb.WatchResponse{Revision: 7, Views: []*pb.View{view("a", 7, "h2")}}, []string{"a", "b"}, true},
		{&pb.WatchResponse{Revision: 7}, []string{"a", "b"}, true},
	}
	for i, st := range steps {
		v.Apply(st.msg)
		var got []string
		for _, x := range v.All() {
			got = append(got, x.GetService())
		}
		if !slices.Equal(got, st.want) || v.Complete() != st.complete || v.Revision() != st.msg.GetRevision() {
			t.Errorf("after message %d: services %v complete %v revision %d, want %v %v %d",
				i, got, v.Complete(), v.Revision(), st.want, st.complete, st.msg.GetRevision())
		}
	}
	if v.Get("a").GetInstances()[0].GetHost() != "h2" || v.Get("c") != nil {
		t.Errorf("Get: a=%v c=%v, want a on h2 and no c", v.Get("a"), v.Get("c"))
	}
}
