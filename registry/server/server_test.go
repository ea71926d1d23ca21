package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// Malformed names are the caller's mistake: InvalidArgument, naming the
// field, before anything is read. A well-formed name nobody registered is
// NotFound.
func TestMalformedNamesAreInvalidArgument(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	reg := c.Registry(t, 0)

	t.Run("Watch", func(t *testing.T) {
		tests := []struct {
			name  string
			req   *pb.WatchRequest
			field string
		}{
			{"slash", &pb.WatchRequest{Services: []string{"bad/name"}}, "services[0]"},
			{"empty", &pb.WatchRequest{Services: []string{""}}, "services[0]"},
			{"leading dash", &pb.WatchRequest{Services: []string{"-x"}}, "services[0]"},
			{"second of two", &pb.WatchRequest{Services: []string{"cache", "bad/name"}}, "services[1]"},
			{"negative from_revision", &pb.WatchRequest{FromRevision: -1}, "from_revision"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := firstWatchErr(t, reg, tt.req)
				if got := status.Code(err); got != codes.InvalidArgument {
					t.Fatalf("Watch(%v): code %v (%v), want InvalidArgument", tt.req, got, err)
				}
				if msg := status.Convert(err).Message(); !strings.Contains(msg, tt.field) {
					t.Errorf("Watch(%v): message %q does not name %s", tt.req, msg, tt.field)
				}
			})
		}
	})

	t.Run("GetService", func(t *testing.T) {
		tests := []struct {
			service string
			want    codes.Code
		}{
			{"bad/name", codes.InvalidArgument},
			{"", codes.InvalidArgument},
			{"-x", codes.InvalidArgument},
			{"nosuch", codes.NotFound},
		}
		for _, tt := range tests {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := reg.GetService(ctx, &pb.GetServiceRequest{Service: tt.service})
			cancel()
			if got := status.Code(err); got != tt.want {
				t.Errorf("GetService(%q): code %v (%v), want %v", tt.service, got, err, tt.want)
			}
		}
	})
}

// A record the server cannot read (a value that is not JSON, a key in an
// unknown folder) is skipped: other services keep their views, a later valid
// write to the same key is served, and no Watch stream fails over it — nor
// does a hub that starts on a keyspace holding such records.
func TestCorruptRecordsAreSkipped(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	dbRev := putInstance(t, cli, instance("h2", "db", "10.0.0.2:5432"))
	w := servertest.Watch(t, reg, &pb.WatchRequest{})
	w.WaitView("db", 5*time.Second, "db registered", instances(1))

	putRaw(t, cli, registry.InstanceKey("h1", "cache"), "not json")
	putRaw(t, cli, registry.Prefix+"nonsense/x", "whatever")
	putRaw(t, cli, registry.Prefix+"instances/h1/too/deep", "{}")
	putInstance(t, cli, instance("h1", "cache", "10.0.0.1:11211"))
	w.WaitView("cache", 5*time.Second, "the valid write after the corrupt one", func(v *pb.View) bool {
		return servertest.Instance(v, "h1").GetAddress() == "10.0.0.1:11211"
	})
	if err := w.Err(); err != nil {
		t.Fatalf("watch stream ended: %v", err)
	}

	v := getService(t, reg, "db")
	if len(v.GetInstances()) != 1 || v.GetRevision() != dbRev || v.GetStatus() != pb.Status_STATUS_READ_WRITE {
		t.Errorf("db after corrupt records: %s, want its one instance at revision %d, READ_WRITE", servertest.Describe(v), dbRev)
	}

	t.Run("a new hub loads around corrupt records", func(t *testing.T) {
		putRaw(t, cli, registry.InstanceKey("h3", "cache"), "{not json either")
		hub := newHub(t, cli, server.HubConfig{})
		if got := hub.View("db"); len(got.GetInstances()) != 1 {
			t.Errorf("db: %s, want one instance", servertest.Describe(got))
		}
		got := hub.View("cache")
		if len(got.GetInstances()) != 1 || servertest.Instance(got, "h1") == nil {
			t.Errorf("cache: %s, want h1 only", servertest.Describe(got))
		}
	})
}

// Watch with no services sends every service in one snapshot, then one
// message per change: a new service as one view, the removal of its last
// instance as a view with no instances and status DOWN.
func TestWatchSnapshotThenChanges(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	putInstance(t, cli, instance("h1", "cache", "10.0.0.1:11211"))
	putInstance(t, cli, instance("h2", "cache", "10.0.0.2:11211"))
	last := putInstance(t, cli, instance("h1", "db", "10.0.0.1:5432"))
	waitApplied(t, c.Servers[0].Hub(), last)

	w := servertest.Watch(t, reg, &pb.WatchRequest{})
	first := waitMessages(t, w, 1)[0]
	if !first.GetSnapshot() {
		t.Fatalf("first message is not a snapshot: %v", first)
	}
	if got, want := serviceNames(first.GetViews()), []string{"cache", "db"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot services %v, want %v", got, want)
	}
	if first.GetRevision() < last {
		t.Errorf("snapshot revision %d, want at least %d (the last write)", first.GetRevision(), last)
	}
	for _, v := range first.GetViews() {
		if v.GetRevision() > first.GetRevision() {
			t.Errorf("snapshot at revision %d holds a later view: %s", first.GetRevision(), servertest.Describe(v))
		}
	}
	if n := len(first.GetViews()[0].GetInstances()); n != 2 {
		t.Errorf("cache in snapshot has %d instances, want 2", n)
	}

	t.Run("new service arrives as one message with one view", func(t *testing.T) {
		rev := putInstance(t, cli, instance("h1", "solr", "10.0.0.1:8983"))
		m := waitMessages(t, w, 2)[1]
		if m.GetSnapshot() || len(m.GetViews()) != 1 {
			t.Fatalf("message after the put: %v, want one view, not a snapshot", m)
		}
		v := m.GetViews()[0]
		if v.GetService() != "solr" || v.GetRevision() != rev || len(v.GetInstances()) != 1 || v.GetStatus() != pb.Status_STATUS_READ_WRITE {
			t.Fatalf("view %s, want solr at revision %d with one instance, READ_WRITE", servertest.Describe(v), rev)
		}
		if m.GetRevision() < rev {
			t.Errorf("message revision %d, want at least %d", m.GetRevision(), rev)
		}
	})

	t.Run("deleting the last instance sends an empty DOWN view", func(t *testing.T) {
		rev := deleteKey(t, cli, registry.InstanceKey("h1", "solr"))
		m := waitMessages(t, w, 3)[2]
		if len(m.GetViews()) != 1 {
			t.Fatalf("message after the delete: %v, want one view", m)
		}
		v := m.GetViews()[0]
		if v.GetService() != "solr" || len(v.GetInstances()) != 0 || v.GetStatus() != pb.Status_STATUS_DOWN || v.GetRevision() != rev {
			t.Fatalf("view %s, want solr with no instances, DOWN, at revision %d", servertest.Describe(v), rev)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := reg.GetService(ctx, &pb.GetServiceRequest{Service: "solr"}); status.Code(err) != codes.NotFound {
			t.Errorf("GetService(solr) after its last instance left: %v, want NotFound", err)
		}
	})
	if err := w.Err(); err != nil {
		t.Fatalf("watch stream ended: %v", err)
	}
}

// A subscriber that reconnects with the revision it saw gets only the views
// that changed after it (a removal included), not a snapshot, and then the
// changes that follow.
func TestResumeSendsOnlyLaterChanges(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	putInstance(t, cli, instance("h1", "cache", "10.0.0.1:11211"))
	putInstance(t, cli, instance("h1", "db", "10.0.0.1:5432"))
	last := putInstance(t, cli, instance("h1", "solr", "10.0.0.1:8983"))
	waitApplied(t, c.Servers[0].Hub(), last)

	w := servertest.Watch(t, reg, &pb.WatchRequest{})
	seen := waitMessages(t, w, 1)[0].GetRevision()
	w.Close()

	dbRev := putInstance(t, cli, instance("h1", "db", "10.0.0.9:5432"))
	solrRev := deleteKey(t, cli, registry.InstanceKey("h1", "solr"))
	waitApplied(t, c.Servers[0].Hub(), solrRev)

	w = servertest.Watch(t, reg, &pb.WatchRequest{FromRevision: seen})
	first := waitMessages(t, w, 1)[0]
	if first.GetSnapshot() {
		t.Fatalf("resume from %d got a snapshot: %v", seen, first)
	}
	if got, want := serviceNames(first.GetViews()), []string{"db", "solr"}; !slices.Equal(got, want) {
		t.Fatalf("resume from %d sent %v, want %v (cache did not change)", seen, got, want)
	}
	db, solr := first.GetViews()[0], first.GetViews()[1]
	if db.GetRevision() != dbRev || servertest.Instance(db, "h1").GetAddress() != "10.0.0.9:5432" {
		t.Errorf("db: %s, want the new address at revision %d", servertest.Describe(db), dbRev)
	}
	if len(solr.GetInstances()) != 0 || solr.GetStatus() != pb.Status_STATUS_DOWN {
		t.Errorf("solr: %s, want removed (no instances, DOWN)", servertest.Describe(solr))
	}
	if first.GetRevision() < solrRev {
		t.Errorf("resume message revision %d, want at least %d", first.GetRevision(), solrRev)
	}

	rev := putInstance(t, cli, instance("h2", "cache", "10.0.0.2:11211"))
	m := waitMessages(t, w, 2)[1]
	if got := serviceNames(m.GetViews()); !slices.Equal(got, []string{"cache"}) || m.GetViews()[0].GetRevision() != rev {
		t.Errorf("change after resume: %v, want cache at revision %d", m, rev)
	}
}

// A resume from a revision older than the hub's history gets a fresh
// snapshot; a resume from inside it gets only what changed since.
func TestResumeOlderThanHistoryGetsSnapshot(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	putInstance(t, cli, instance("h1", "cache", "10.0.0.1:11211"))
	hub := newHub(t, cli, server.HubConfig{History: 2})
	_, before := hub.Views()
	// Three changes to x; a history of 2 forgets the first. Each is applied
	// before the next is written: changes that reach the hub in one etcd
	// watch response collapse into one.
	var revs []int64
	for i := range 3 {
		revs = append(revs, putInstance(t, cli, instance("h1", "x", fmt.Sprintf("10.0.0.1:%d", 9000+i))))
		waitApplied(t, hub, revs[i])
	}

	tests := []struct {
		name         string
		from         int64
		wantSnapshot bool
		wantServices []string
	}{
		{"before the history", before, true, []string{"cache", "x"}},
		{"oldest change forgotten: resume from it", revs[0], false, []string{"x"}},
		{"up to date", revs[2], false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sub, first, err := hub.Subscribe(ctx, nil, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			if first.GetSnapshot() != tt.wantSnapshot {
				t.Errorf("Subscribe(from %d): snapshot=%v, want %v", tt.from, first.GetSnapshot(), tt.wantSnapshot)
			}
			if got := serviceNames(first.GetViews()); !slices.Equal(got, tt.wantServices) {
				t.Errorf("Subscribe(from %d): services %v, want %v", tt.from, got, tt.wantServices)
			}
			for _, v := range first.GetViews() {
				if v.GetService() == "x" && v.GetRevision() != revs[2] {
					t.Errorf("x: %s, want the latest at revision %d", servertest.Describe(v), revs[2])
				}
			}
		})
	}
}

// A subscriber that does not read while 200 changes hit one instance gets
// one message for that service, carrying the latest value: what it costs the
// hub is one pending view per service, never a queue.
func TestSlowSubscriberGetsLatestValue(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	hub := newHub(t, cli, server.HubConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, _, err := hub.Subscribe(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	const n = 200
	var last int64
	for i := range n {
		last = putInstance(t, cli, instance("h1", "hot", fmt.Sprintf("10.0.0.1:%d", 10000+i)))
		if i == n/2 {
			putInstance(t, cli, instance("h1", "cold", "10.0.0.1:1"))
		}
	}
	waitApplied(t, hub, last)
	if got := hub.View("hot").GetRevision(); got != last {
		t.Fatalf("hub view of hot at revision %d, want %d", got, last)
	}

	msgs, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, serviceNames(m.GetViews())...)
	}
	if !slices.Equal(got, []string{"cold", "hot"}) {
		t.Fatalf("after %d changes: %d messages for %v, want one for cold and one for hot", n, len(msgs), got)
	}
	hot := msgs[1].GetViews()[0]
	want := fmt.Sprintf("10.0.0.1:%d", 10000+n-1)
	if addr := servertest.Instance(hot, "h1").GetAddress(); addr != want || hot.GetRevision() != last {
		t.Errorf("hot: %s address %s, want the latest: %s at revision %d", servertest.Describe(hot), addr, want, last)
	}

	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if more, err := sub.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Next: %v, %v; want nothing left (deadline exceeded)", more, err)
	}
}

// With its etcd member cut off from a quorum the server keeps serving the
// last views it knew, marked stale (never emptied), on open streams and to
// new requests; /readyz and the gRPC health service say not ready while
// /healthz says the process is alive.
func TestQuorumLostServesLastViewsAsStale(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	base := "http://" + c.Servers[0].HTTPAddr()
	putInstance(t, cli, instance("h1", "db", "10.0.0.1:5432"))
	putInstance(t, cli, instance("h2", "db", "10.0.0.2:5432"))
	w := servertest.Watch(t, reg, &pb.WatchRequest{Services: []string{"db"}})
	w.WaitView("db", 5*time.Second, "two instances", instances(2))
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with a quorum: %d %q, want 200", code, body)
	}
	msgs := w.Messages()
	seen := msgs[len(msgs)-1].GetRevision() // what a client of server 0 knows

	c.Stop(1)
	c.Stop(2)
	hub := c.Servers[0].Hub()
	servertest.WaitFor(t, 30*time.Second, "server 0 serving stale views", func() error {
		if !hub.Stale() {
			return errors.New("hub not stale")
		}
		return nil
	})

	v := w.WaitView("db", 5*time.Second, "a stale view", func(v *pb.View) bool { return v.GetStale() }).View
	if len(v.GetInstances()) != 2 || v.GetStatus() != pb.Status_STATUS_READ_WRITE {
		t.Errorf("stale view on the stream: %s, want the last known two instances, READ_WRITE", servertest.Describe(v))
	}
	for i, m := range w.Messages() {
		for _, v := range m.GetViews() {
			if len(v.GetInstances()) != 2 {
				t.Errorf("message %d emptied the view: %s", i, servertest.Describe(v))
			}
		}
	}
	if err := w.Err(); err != nil {
		t.Errorf("watch stream ended: %v", err)
	}

	v = getService(t, reg, "db")
	if !v.GetStale() || len(v.GetInstances()) != 2 {
		t.Errorf("GetService(db) without quorum: %s, want stale with two instances", servertest.Describe(v))
	}

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz without quorum: %d %q, want 503", code, body)
	}
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz without quorum: %d %q, want 200", code, body)
	}
	t.Run("new subscriber gets a stale snapshot", func(t *testing.T) {
		w := servertest.Watch(t, reg, &pb.WatchRequest{Services: []string{"db"}})
		first := waitMessages(t, w, 1)[0]
		if !first.GetSnapshot() || len(first.GetViews()) != 1 {
			t.Fatalf("first message %v, want a snapshot of db", first)
		}
		if v := first.GetViews()[0]; !v.GetStale() || len(v.GetInstances()) != 2 {
			t.Errorf("db in snapshot: %s, want stale with two instances", servertest.Describe(v))
		}
	})

	t.Run("resuming subscriber learns its views are stale", func(t *testing.T) {
		w := servertest.Watch(t, reg, &pb.WatchRequest{Services: []string{"db"}, FromRevision: seen})
		v := w.WaitView("db", 3*time.Second, "db marked stale after resuming from "+fmt.Sprint(seen), func(v *pb.View) bool { return v.GetStale() }).View
		if len(v.GetInstances()) != 2 {
			t.Errorf("db after resume: %s, want two instances", servertest.Describe(v))
		}
	})

	t.Run("a hub started without a quorum serves the member's state as stale", func(t *testing.T) {
		hub := newHub(t, c.Servers[0].Client(), server.HubConfig{ReadTimeout: 500 * time.Millisecond})
		if !hub.Stale() {
			t.Errorf("new hub without a quorum is not stale")
		}
		if v := hub.View("db"); !v.GetStale() || len(v.GetInstances()) != 2 {
			t.Errorf("db: %s, want stale with two instances", servertest.Describe(v))
		}
	})

	health := healthClient(t, c.Servers[0].GRPCAddr())
	servertest.WaitFor(t, 5*time.Second, "gRPC health NOT_SERVING", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: pb.RegistryService_ServiceDesc.ServiceName})
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			return fmt.Errorf("status %v", resp.GetStatus())
		}
		return nil
	})
}

// The HTTP port serves the views as JSON and the server's metrics.
func TestHTTPServicesAndMetrics(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	base := "http://" + c.Servers[0].HTTPAddr()
	rev := putInstance(t, cli, instance("h1", "web", "10.0.0.1:8080"))
	waitApplied(t, c.Servers[0].Hub(), rev)

	code, body := httpGet(t, base+"/v1/services")
	if code != http.StatusOK {
		t.Fatalf("/v1/services: %d %q", code, body)
	}
	var list pb.ListServicesResponse
	if err := protojson.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("/v1/services is not a ListServicesResponse: %v\n%s", err, body)
	}
	if got := serviceNames(list.GetViews()); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("/v1/services lists %v, want [web]", got)
	}
	if addr := servertest.Instance(list.GetViews()[0], "h1").GetAddress(); addr != "10.0.0.1:8080" || list.GetRevision() < rev {
		t.Errorf("/v1/services: web address %q revision %d, want 10.0.0.1:8080 at revision ≥ %d", addr, list.GetRevision(), rev)
	}

	code, body = httpGet(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "understudy_watch_subscribers") {
		t.Errorf("/metrics: %d, want 200 with understudy_watch_subscribers in:\n%.2000s", code, body)
	}
}

// ClusterStatus lists every member with the zone its server recorded, one
// leader and a quorum; with one member stopped, another server reports it
// unreachable and the quorum intact.
func TestClusterStatus(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	reg := c.Registry(t, 0)
	var st *pb.ClusterStatusResponse
	servertest.WaitFor(t, 15*time.Second, "every member with its zone", func() error {
		var err error
		if st, err = clusterStatus(t, reg); err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetZone() == "" {
				return fmt.Errorf("%s has no zone yet", m.GetName())
			}
		}
		return nil
	})
	var got []string
	for _, m := range st.GetMembers() {
		got = append(got, m.GetName()+"/"+m.GetZone())
		if !m.GetReachable() {
			t.Errorf("member %s unreachable: %s", m.GetName(), m.GetError())
		}
	}
	if want := []string{"m1/z1", "m2/z2", "m3/z3"}; !slices.Equal(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
	leaders := leaderNames(st)
	if !st.GetQuorum() || len(leaders) != 1 || st.GetLeader() != leaders[0] || st.GetStale() {
		t.Fatalf("quorum=%v leader=%q leaders flagged %v stale=%v, want a quorum and exactly one leader", st.GetQuorum(), st.GetLeader(), leaders, st.GetStale())
	}

	// Stop the leader: the harder case, the survivors must elect a new one.
	stopped := slices.IndexFunc(st.GetMembers(), func(m *pb.MemberStatus) bool { return m.GetIsLeader() })
	ask := (stopped + 1) % 3
	name := st.GetMembers()[stopped].GetName()
	c.Stop(stopped)
	reg = c.Registry(t, ask)
	servertest.WaitFor(t, 15*time.Second, name+" unreachable with a quorum left", func() error {
		var err error
		if st, err = clusterStatus(t, reg); err != nil {
			return err
		}
		m := st.GetMembers()[stopped]
		switch leaders := leaderNames(st); {
		case m.GetReachable():
			return fmt.Errorf("%s still reachable", name)
		case !st.GetQuorum():
			return errors.New("no quorum")
		case len(leaders) != 1 || leaders[0] == name || st.GetLeader() != leaders[0]:
			return fmt.Errorf("leader %q, flagged %v", st.GetLeader(), leaders)
		}
		return nil
	})
	if m := st.GetMembers()[stopped]; m.GetError() == "" || m.GetZone() != c.Zones[stopped] {
		t.Errorf("stopped member %s: error %q zone %q, want an error and zone %s", name, m.GetError(), m.GetZone(), c.Zones[stopped])
	}
	if st.GetStale() {
		t.Errorf("answer marked stale with a quorum")
	}
}

// instance is a passing pool instance in zone z1.
func instance(host, service, addr string) *pb.Instance {
	return &pb.Instance{
		Host: host, Service: service, Zone: "z1", Address: addr,
		Mode: pb.Mode_MODE_POOL, Health: pb.Health_HEALTH_PASSING,
	}
}

func instances(n int) func(*pb.View) bool {
	return func(v *pb.View) bool { return len(v.GetInstances()) == n }
}

// putInstance writes in where its agent would and returns the revision.
func putInstance(t *testing.T, cli *clientv3.Client, in *pb.Instance) int64 {
	t.Helper()
	b, err := registry.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	return putRaw(t, cli, registry.InstanceKey(in.GetHost(), in.GetService()), string(b))
}

func putRaw(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func deleteKey(t *testing.T, cli *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Delete(ctx, key)
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	if resp.Deleted != 1 {
		t.Fatalf("delete %s: %d keys deleted, want 1", key, resp.Deleted)
	}
	return resp.Header.Revision
}

// newHub starts a hub of its own on cli, stopped when the test ends, and
// waits for its first read.
func newHub(t *testing.T, cli *clientv3.Client, cfg server.HubConfig) *server.Hub {
	t.Helper()
	cfg.Logger = servertest.Quiet(t)
	hub := server.NewHub(cli, cfg)
	t.Cleanup(hub.Stop)
	select {
	case <-hub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("hub did not read the keyspace within 10s")
	}
	return hub
}

// waitApplied waits until hub's views are complete up to rev.
func waitApplied(t *testing.T, hub *server.Hub, rev int64) {
	t.Helper()
	servertest.WaitFor(t, 10*time.Second, fmt.Sprintf("hub at revision %d", rev), func() error {
		if _, got := hub.Views(); got < rev {
			return fmt.Errorf("hub at revision %d", got)
		}
		return nil
	})
}

// waitMessages waits until w has received at least n messages and returns
// them all.
func waitMessages(t *testing.T, w *servertest.Watcher, n int) []*pb.WatchResponse {
	t.Helper()
	var msgs []*pb.WatchResponse
	servertest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d watch messages", n), func() error {
		if msgs = w.Messages(); len(msgs) >= n {
			return nil
		}
		if err := w.Err(); err != nil {
			t.Fatalf("watch stream ended after %d messages: %v", len(msgs), err)
		}
		return fmt.Errorf("%d received", len(msgs))
	})
	return msgs
}

// firstWatchErr opens a Watch and returns the error of its first receive.
func firstWatchErr(t *testing.T, reg pb.RegistryServiceClient, req *pb.WatchRequest) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reg.Watch(ctx, req)
	if err != nil {
		return err
	}
	m, err := stream.Recv()
	if err == nil {
		t.Fatalf("Watch(%v) succeeded with %v, want an error", req, m)
	}
	return err
}

func getService(t *testing.T, reg pb.RegistryServiceClient, service string) *pb.View {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := reg.GetService(ctx, &pb.GetServiceRequest{Service: service})
	if err != nil {
		t.Fatalf("GetService(%s): %v", service, err)
	}
	return resp.GetView()
}

func clusterStatus(t *testing.T, reg pb.RegistryServiceClient) (*pb.ClusterStatusResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return reg.ClusterStatus(ctx, &pb.ClusterStatusRequest{})
}

func leaderNames(st *pb.ClusterStatusResponse) []string {
	var out []string
	for _, m := range st.GetMembers() {
		if m.GetIsLeader() {
			out = append(out, m.GetName())
		}
	}
	return out
}

func serviceNames(views []*pb.View) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.GetService())
	}
	return out
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle keep-alive connection outlives the test
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}
