package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// The tests below play the agents: they write instances, the leader key and
// the primary record straight into etcd, as agents of a primary-mode service
// would, and check what the registry makes of them.

// member is a primary-mode instance on host: passing, in zone z1, with tags.
func member(service, host string, health pb.Health, tags ...string) *pb.Instance {
	return &pb.Instance{
		Host: host, Service: service, Zone: "z1", Address: host + ":5432",
		Mode: pb.Mode_MODE_PRIMARY, Health: health, Tags: tags,
	}
}

func passing(service, host string, tags ...string) *pb.Instance {
	return member(service, host, pb.Health_HEALTH_PASSING, tags...)
}

// promote writes the leader key and then the primary record of service for
// host, as the winning agent would, and returns the epoch.
func promote(t *testing.T, cli *clientv3.Client, service, host string) int64 {
	t.Helper()
	epoch := putRaw(t, cli, registry.LeaderKey(service), registry.MustEncode(&pb.Leader{Host: host, Address: host + ":5432", Zone: "z1"}))
	putRaw(t, cli, registry.PrimaryKey(service), registry.MustEncode(&pb.Primary{Host: host, Address: host + ":5432", Epoch: epoch, Zone: "z1"}))
	return epoch
}

// primaryService registers instances of service (primary mode) and makes
// primary its primary, returning the epoch.
func primaryService(t *testing.T, cli *clientv3.Client, service, primary string, ins ...*pb.Instance) int64 {
	t.Helper()
	for _, in := range ins {
		in.Service = service
		putInstance(t, cli, in)
	}
	return promote(t, cli, service, primary)
}

func putControl(t *testing.T, cli *clientv3.Client, service string, c *pb.Control) int64 {
	t.Helper()
	return putRaw(t, cli, registry.ControlKey(service), registry.MustEncode(c))
}

// control reads the control record of service and its mod revision (0 and
// nil when absent).
func control(t *testing.T, cli *clientv3.Client, service string) (*pb.Control, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, registry.ControlKey(service))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0
	}
	c := &pb.Control{}
	if err := registry.Decode(resp.Kvs[0].Value, c); err != nil {
		t.Fatal(err)
	}
	return c, resp.Kvs[0].ModRevision
}

func switchover(reg pb.RegistryServiceClient, service, to string) (*pb.SwitchoverResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return reg.Switchover(ctx, &pb.SwitchoverRequest{Service: service, To: to})
}

func pause(reg pb.RegistryServiceClient, service string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := reg.Pause(ctx, &pb.PauseRequest{Service: service})
	return err
}

func resume(reg pb.RegistryServiceClient, service string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := reg.Resume(ctx, &pb.ResumeRequest{Service: service})
	return err
}

func listEvents(t *testing.T, reg pb.RegistryServiceClient, service string, limit int32) []*pb.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := reg.ListEvents(ctx, &pb.ListEventsRequest{Service: service, Limit: limit})
	if err != nil {
		t.Fatalf("ListEvents(%s, %d): %v", service, limit, err)
	}
	return resp.GetEvents()
}

func eventKinds(evs []*pb.Event) []pb.EventKind {
	var out []pb.EventKind
	for _, ev := range evs {
		out = append(out, ev.GetKind())
	}
	return out
}

// wantCode fails the test unless err has code and a message containing
// every one of words.
func wantCode(t *testing.T, what string, err error, code codes.Code, words ...string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: code %v (%v), want %v", what, got, err, code)
	}
	msg := status.Convert(err).Message()
	t.Logf("%s: %s", what, msg)
	for _, w := range words {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: message %q does not contain %q", what, msg, w)
		}
	}
}

// Every switchover that cannot succeed now is refused with
// FailedPrecondition and a reason naming the problem, and leaves the
// control record as it was.
func TestSwitchoverRefusals(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)

	tests := []struct {
		name  string
		setup func(service string)
		to    string
		words []string
	}{
		{"no instances", func(string) {}, "", []string{"no instance"}},
		{"only a control record", func(s string) { putControl(t, cli, s, &pb.Control{}) }, "", []string{"no instance"}},
		{"pool", func(s string) {
			putInstance(t, cli, instance("h1", s, "h1:11211"))
			putInstance(t, cli, instance("h2", s, "h2:11211"))
		}, "h2", []string{"pool"}},
		{"no primary", func(s string) {
			putInstance(t, cli, passing(s, "h1"))
			putInstance(t, cli, passing(s, "h2"))
		}, "h2", []string{"no primary"}},
		{"paused", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), passing(s, "h2"))
			putControl(t, cli, s, &pb.Control{Paused: true})
		}, "h2", []string{"paused"}},
		{"pending switchover", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), passing(s, "h2"), passing(s, "h3"))
			putControl(t, cli, s, &pb.Control{SwitchoverFrom: "h1", SwitchoverTo: "h3", RequestedAt: timestamppb.New(time.Now().Add(-5 * time.Second))})
		}, "h2", []string{"already pending", "h1", "h3"}},
		{"pending switchover to the best standby", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), passing(s, "h2"))
			putControl(t, cli, s, &pb.Control{SwitchoverFrom: "h1", RequestedAt: timestamppb.Now()})
		}, "", []string{"already pending", "best ranked standby"}},
		{"target unknown", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), passing(s, "h2"))
		}, "h9", []string{"h9", "unknown"}},
		{"target unhealthy", func(s string) {
			unhealthy := member(s, "h2", pb.Health_HEALTH_CRITICAL)
			unhealthy.CheckOutput = "connection refused"
			primaryService(t, cli, s, "h1", passing(s, "h1"), unhealthy)
		}, "h2", []string{"h2", "unhealthy", "connection refused"}},
		{"target health unknown", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), member(s, "h2", pb.Health_HEALTH_UNSPECIFIED))
		}, "h2", []string{"h2", "unhealthy"}},
		{"target nofailover", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), passing(s, "h2", "replica", "nofailover"))
		}, "h2", []string{"h2", "nofailover"}},
		{"target already primary", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), passing(s, "h2"))
		}, "h1", []string{"h1", "already primary"}},
		{"no standby can take over", func(s string) {
			primaryService(t, cli, s, "h1", passing(s, "h1"), member(s, "h2", pb.Health_HEALTH_CRITICAL), passing(s, "h3", "nofailover"))
		}, "", []string{"no standby", "h1"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			service := fmt.Sprintf("svc%d", i)
			tt.setup(service)
			before, beforeRev := control(t, cli, service)

			resp, err := switchover(reg, service, tt.to)
			if err == nil {
				t.Fatalf("Switchover(%s, to %q) = %v, want it refused", service, tt.to, resp)
			}
			wantCode(t, "Switchover", err, codes.FailedPrecondition, tt.words...)

			after, afterRev := control(t, cli, service)
			if afterRev != beforeRev || !proto.Equal(before, after) {
				t.Errorf("control record changed by a refused switchover: %v @%d -> %v @%d", before, beforeRev, after, afterRev)
			}
			if evs := listEvents(t, reg, service, 0); len(evs) != 0 {
				t.Errorf("events after a refused switchover: %v, want none", evs)
			}
		})
	}

	t.Run("malformed names", func(t *testing.T) {
		for _, req := range []*pb.SwitchoverRequest{{Service: "a/b"}, {Service: ""}, {Service: "pg", To: "h 1"}} {
			_, err := switchover(reg, req.GetService(), req.GetTo())
			wantCode(t, fmt.Sprintf("Switchover(%v)", req), err, codes.InvalidArgument)
		}
	})
}

// A switchover writes the request to the control record in one guarded
// transaction and records an event at that revision. The request blocks
// another while its primary holds the role; once a new primary acts, or the
// request is older than 30 s, a new one may be made.
func TestSwitchoverRequest(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	epoch := primaryService(t, cli, "pg", "h1", passing("pg", "h1"), passing("pg", "h2"), passing("pg", "h3"))

	before := time.Now()
	resp, err := switchover(reg, "pg", "h2")
	if err != nil {
		t.Fatalf("Switchover(pg, h2): %v", err)
	}
	if resp.GetFrom() != "h1" || resp.GetTo() != "h2" {
		t.Errorf("Switchover response from %q to %q, want h1 to h2", resp.GetFrom(), resp.GetTo())
	}
	ctl, ctlRev := control(t, cli, "pg")
	if ctl.GetPaused() || ctl.GetSwitchoverFrom() != "h1" || ctl.GetSwitchoverTo() != "h2" {
		t.Errorf("control record %v, want switchover from h1 to h2, not paused", ctl)
	}
	if at := ctl.GetRequestedAt().AsTime(); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("requested_at %v, want about now (%v)", at, before)
	}
	evs := listEvents(t, reg, "pg", 0)
	if len(evs) != 1 {
		t.Fatalf("events %v, want one", evs)
	}
	ev := evs[0]
	if ev.GetKind() != pb.EventKind_EVENT_KIND_SWITCHOVER_REQUESTED || ev.GetHost() != "h1" || ev.GetEpoch() != epoch ||
		ev.GetRevision() != ctlRev || !strings.Contains(ev.GetReason(), "h2") || ev.GetService() != "pg" {
		t.Errorf("event %v, want SWITCHOVER_REQUESTED of h1 epoch %d at revision %d naming h2", ev, epoch, ctlRev)
	}

	_, err = switchover(reg, "pg", "h3")
	wantCode(t, "second Switchover while the first is pending", err, codes.FailedPrecondition, "already pending")

	// h2 takes over as asked: the request is done, and a new one (from h2)
	// may be made at once although the control record still names h1.
	deleteKey(t, cli, registry.PrimaryKey("pg"))
	deleteKey(t, cli, registry.LeaderKey("pg"))
	promote(t, cli, "pg", "h2")
	resp, err = switchover(reg, "pg", "")
	if err != nil {
		t.Fatalf("Switchover(pg) after h2 took over: %v", err)
	}
	if resp.GetFrom() != "h2" || resp.GetTo() != "" {
		t.Errorf("Switchover response from %q to %q, want from h2 to the best standby (\"\")", resp.GetFrom(), resp.GetTo())
	}
	evs = listEvents(t, reg, "pg", 0)
	if len(evs) != 2 || !strings.Contains(evs[1].GetReason(), "best") || evs[1].GetHost() != "h2" {
		t.Errorf("events %v, want a second request from h2 to the best standby", evs)
	}

	t.Run("a request older than 30s no longer blocks", func(t *testing.T) {
		primaryService(t, cli, "old", "h1", passing("old", "h1"), passing("old", "h2"))
		putControl(t, cli, "old", &pb.Control{SwitchoverFrom: "h1", SwitchoverTo: "h2", RequestedAt: timestamppb.New(time.Now().Add(-time.Minute))})
		if _, err := switchover(reg, "old", "h2"); err != nil {
			t.Fatalf("Switchover(old, h2) with a stale request pending: %v", err)
		}
	})

	t.Run("concurrent requests: one wins", func(t *testing.T) {
		primaryService(t, cli, "race", "h1", passing("race", "h1"), passing("race", "h2"), passing("race", "h3"))
		errs := make(chan error, 2)
		for _, to := range []string{"h2", "h3"} {
			go func() {
				_, err := switchover(reg, "race", to)
				errs <- err
			}()
		}
		var ok, refused int
		for range 2 {
			switch err := <-errs; status.Code(err) {
			case codes.OK:
				ok++
			case codes.FailedPrecondition:
				refused++
			default:
				t.Errorf("concurrent Switchover: %v", err)
			}
		}
		if ok != 1 || refused != 1 {
			t.Errorf("concurrent switchovers: %d accepted, %d refused; want 1 and 1", ok, refused)
		}
		if evs := listEvents(t, reg, "race", 0); len(evs) != 1 {
			t.Errorf("events %v, want one request", evs)
		}
	})
}

// Pause and Resume flip the paused flag of the view on an open Watch stream,
// Pause drops a pending switchover and blocks new ones, and both are
// recorded as events. Repeating either changes nothing.
func TestPauseResume(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	primaryService(t, cli, "pg", "h1", passing("pg", "h1"), passing("pg", "h2"))
	w := servertest.Watch(t, reg, &pb.WatchRequest{Services: []string{"pg"}})
	w.WaitView("pg", 5*time.Second, "pg with a primary", func(v *pb.View) bool { return v.GetPrimary() != nil && !v.GetPaused() })

	if _, err := switchover(reg, "pg", "h2"); err != nil {
		t.Fatalf("Switchover: %v", err)
	}
	if err := pause(reg, "pg"); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	w.WaitView("pg", 5*time.Second, "pg paused", func(v *pb.View) bool { return v.GetPaused() })
	if v := getService(t, reg, "pg"); !v.GetPaused() || v.GetPrimary().GetHost() != "h1" {
		t.Errorf("GetService(pg) after Pause: paused %v primary %v, want paused with h1 primary", v.GetPaused(), v.GetPrimary())
	}
	ctl, rev := control(t, cli, "pg")
	if !ctl.GetPaused() || ctl.GetSwitchoverFrom() != "" || ctl.GetSwitchoverTo() != "" {
		t.Errorf("control after Pause: %v, want paused and no switchover pending", ctl)
	}
	_, err := switchover(reg, "pg", "h2")
	wantCode(t, "Switchover while paused", err, codes.FailedPrecondition, "paused")

	if err := pause(reg, "pg"); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	if _, again := control(t, cli, "pg"); again != rev {
		t.Errorf("second Pause rewrote the control record (revision %d -> %d)", rev, again)
	}

	if err := resume(reg, "pg"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	w.WaitView("pg", 5*time.Second, "pg resumed", func(v *pb.View) bool { return !v.GetPaused() })
	if ctl, _ := control(t, cli, "pg"); ctl.GetPaused() || ctl.GetSwitchoverFrom() != "" || ctl.GetSwitchoverTo() != "" {
		t.Errorf("control after Resume: %v, want nothing paused or pending", ctl)
	}
	if err := resume(reg, "pg"); err != nil {
		t.Fatalf("second Resume: %v", err)
	}

	evs := listEvents(t, reg, "pg", 0)
	want := []pb.EventKind{pb.EventKind_EVENT_KIND_SWITCHOVER_REQUESTED, pb.EventKind_EVENT_KIND_PAUSED, pb.EventKind_EVENT_KIND_RESUMED}
	if got := eventKinds(evs); !slices.Equal(got, want) {
		t.Fatalf("event kinds %v, want %v", got, want)
	}
	if r := evs[1].GetReason(); !strings.Contains(r, "dropped") {
		t.Errorf("PAUSED event reason %q, want it to say the pending switchover was dropped", r)
	}

	t.Run("unknown service", func(t *testing.T) {
		wantCode(t, "Pause(nosuch)", pause(reg, "nosuch"), codes.NotFound, "nosuch")
		wantCode(t, "Resume(nosuch)", resume(reg, "nosuch"), codes.NotFound, "nosuch")
		if ctl, _ := control(t, cli, "nosuch"); ctl != nil {
			t.Errorf("control record %v written for an unknown service", ctl)
		}
	})
	t.Run("malformed name", func(t *testing.T) {
		wantCode(t, "Pause(a/b)", pause(reg, "a/b"), codes.InvalidArgument, "service")
		wantCode(t, "Resume(\"\")", resume(reg, ""), codes.InvalidArgument, "service")
	})
	t.Run("a pause outlives the service's instances", func(t *testing.T) {
		putInstance(t, cli, passing("later", "h1"))
		if err := pause(reg, "later"); err != nil {
			t.Fatalf("Pause(later): %v", err)
		}
		w := servertest.Watch(t, reg, &pb.WatchRequest{Services: []string{"later"}})
		w.WaitView("later", 5*time.Second, "later paused", func(v *pb.View) bool { return v.GetPaused() })
		deleteKey(t, cli, registry.InstanceKey("h1", "later"))
		w.WaitView("later", 5*time.Second, "later gone", instances(0))
		putInstance(t, cli, passing("later", "h2"))
		w.WaitView("later", 5*time.Second, "later back, still paused", func(v *pb.View) bool {
			return len(v.GetInstances()) == 1 && v.GetPaused()
		})
	})
}

// ListEvents returns a service's events oldest first, the newest limit of
// them when a limit is given.
func TestListEvents(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	primaryService(t, cli, "pg", "h1", passing("pg", "h1"), passing("pg", "h2"))
	steps := []func() error{
		func() error { _, err := switchover(reg, "pg", "h2"); return err },
		func() error { return pause(reg, "pg") },
		func() error { return resume(reg, "pg") },
		func() error { return pause(reg, "pg") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	all := []pb.EventKind{
		pb.EventKind_EVENT_KIND_SWITCHOVER_REQUESTED, pb.EventKind_EVENT_KIND_PAUSED,
		pb.EventKind_EVENT_KIND_RESUMED, pb.EventKind_EVENT_KIND_PAUSED,
	}
	tests := []struct {
		limit int32
		want  []pb.EventKind
	}{
		{0, all},
		{2, all[2:]},
		{1, all[3:]},
		{10, all},
	}
	for _, tt := range tests {
		evs := listEvents(t, reg, "pg", tt.limit)
		if got := eventKinds(evs); !slices.Equal(got, tt.want) {
			t.Errorf("ListEvents(limit %d) kinds %v, want %v", tt.limit, got, tt.want)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i-1].GetRevision() >= evs[i].GetRevision() || evs[i-1].GetAt().AsTime().After(evs[i].GetAt().AsTime()) {
				t.Errorf("ListEvents(limit %d): event %d (rev %d) is not after event %d (rev %d)", tt.limit, i, evs[i].GetRevision(), i-1, evs[i-1].GetRevision())
			}
		}
	}
	if got := listEvents(t, reg, "other", 0); len(got) != 0 {
		t.Errorf("ListEvents(other) = %v, want none", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := reg.ListEvents(ctx, &pb.ListEventsRequest{Service: "pg", Limit: -1})
	wantCode(t, "ListEvents(limit -1)", err, codes.InvalidArgument, "limit")
	_, err = reg.ListEvents(ctx, &pb.ListEventsRequest{Service: "a/b"})
	wantCode(t, "ListEvents(a/b)", err, codes.InvalidArgument, "service")
}

// Views of a primary-mode service mark each instance's role and are
// READ_WRITE while a primary record exists; when the primary record goes
// and a standby passes, the view is READ_ONLY with every instance a standby.
func TestPrimaryModeViews(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	reg := c.Registry(t, 0)
	w := servertest.Watch(t, reg, &pb.WatchRequest{Services: []string{"pg"}})
	roles := func(want map[string]pb.Role) func(*pb.View) bool {
		return func(v *pb.View) bool {
			for host, role := range want {
				if servertest.Instance(v, host).GetRole() != role {
					return false
				}
			}
			return len(v.GetInstances()) == len(want)
		}
	}
	both := func(a, b func(*pb.View) bool) func(*pb.View) bool {
		return func(v *pb.View) bool { return a(v) && b(v) }
	}
	statusIs := func(s pb.Status) func(*pb.View) bool { return func(v *pb.View) bool { return v.GetStatus() == s } }

	putInstance(t, cli, passing("pg", "h1"))
	putInstance(t, cli, member("pg", "h2", pb.Health_HEALTH_CRITICAL))
	w.WaitView("pg", 5*time.Second, "no primary yet: standbys, READ_ONLY", both(statusIs(pb.Status_STATUS_READ_ONLY),
		roles(map[string]pb.Role{"h1": pb.Role_ROLE_STANDBY, "h2": pb.Role_ROLE_STANDBY})))

	epoch := promote(t, cli, "pg", "h1")
	got := w.WaitView("pg", 5*time.Second, "h1 primary, READ_WRITE", both(statusIs(pb.Status_STATUS_READ_WRITE),
		roles(map[string]pb.Role{"h1": pb.Role_ROLE_PRIMARY, "h2": pb.Role_ROLE_STANDBY})))
	if p := got.View.GetPrimary(); p.GetHost() != "h1" || p.GetEpoch() != epoch || got.View.GetMode() != pb.Mode_MODE_PRIMARY {
		t.Errorf("view %s: mode %v primary %v, want MODE_PRIMARY with h1 at epoch %d", servertest.Describe(got.View), got.View.GetMode(), p, epoch)
	}

	// The primary resigns while h2 has recovered: readable, not writable.
	putInstance(t, cli, passing("pg", "h2"))
	deleteKey(t, cli, registry.PrimaryKey("pg"))
	deleteKey(t, cli, registry.LeaderKey("pg"))
	got = w.WaitView("pg", 5*time.Second, "primary record gone, READ_ONLY", both(statusIs(pb.Status_STATUS_READ_ONLY),
		roles(map[string]pb.Role{"h1": pb.Role_ROLE_STANDBY, "h2": pb.Role_ROLE_STANDBY})))
	if got.View.GetPrimary() != nil {
		t.Errorf("READ_ONLY view has primary %v", got.View.GetPrimary())
	}

	next := promote(t, cli, "pg", "h2")
	if next <= epoch {
		t.Errorf("epoch of the new primary %d, want more than %d", next, epoch)
	}
	w.WaitView("pg", 5*time.Second, "h2 primary, READ_WRITE", both(statusIs(pb.Status_STATUS_READ_WRITE),
		roles(map[string]pb.Role{"h1": pb.Role_ROLE_STANDBY, "h2": pb.Role_ROLE_PRIMARY})))

	// The stored records carry no role: roles belong to views.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, registry.InstancesPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), "role") {
			t.Errorf("stored instance %s carries a role: %s", kv.Key, kv.Value)
		}
	}
}
