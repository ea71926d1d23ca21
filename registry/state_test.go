package registry

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// put applies a put of m at key and fails the test on error.
func put(t *testing.T, s *State, key string, m proto.Message, rev int64) *pb.View {
	t.Helper()
	v, err := s.Apply(key, []byte(MustEncode(m)), rev)
	if err != nil {
		t.Fatalf("Apply(put %s @%d): %v", key, rev, err)
	}
	return v
}

// del applies a delete of key and fails the test on error.
func del(t *testing.T, s *State, key string, rev int64) *pb.View {
	t.Helper()
	v, err := s.Apply(key, nil, rev)
	if err != nil {
		t.Fatalf("Apply(delete %s @%d): %v", key, rev, err)
	}
	return v
}

func diffProto(t *testing.T, what string, want, got any) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, diff)
	}
}

func pgInstance(host string, health pb.Health) *pb.Instance {
	return &pb.Instance{Host: host, Service: "postgres", Zone: "dc1", Address: host + ":5432", Mode: pb.Mode_MODE_PRIMARY, Health: health}
}

// standby returns a copy of in as a view of a primary-mode service shows it
// when another host (or none) is primary.
func standby(in *pb.Instance) *pb.Instance {
	c := proto.CloneOf(in)
	c.Role = pb.Role_ROLE_STANDBY
	return c
}

func TestStateApplyInstances(t *testing.T) {
	s := NewState()
	db0 := pgInstance("ol-db0", pb.Health_HEALTH_PASSING)
	db1 := pgInstance("ol-db1", pb.Health_HEALTH_PASSING)

	got := put(t, s, InstanceKey("ol-db1", "postgres"), db1, 10)
	want := &pb.View{Service: "postgres", Mode: pb.Mode_MODE_PRIMARY, Status: pb.Status_STATUS_READ_ONLY, Instances: []*pb.Instance{standby(db1)}, Revision: 10}
	diffProto(t, "view after first put", want, got)
	diffProto(t, "View() after first put", want, s.View("postgres"))

	got = put(t, s, InstanceKey("ol-db0", "postgres"), db0, 11)
	want = &pb.View{Service: "postgres", Mode: pb.Mode_MODE_PRIMARY, Status: pb.Status_STATUS_READ_ONLY, Instances: []*pb.Instance{standby(db0), standby(db1)}, Revision: 11}
	diffProto(t, "view after second put", want, got)

	db1Failing := pgInstance("ol-db1", pb.Health_HEALTH_CRITICAL)
	got = put(t, s, InstanceKey("ol-db1", "postgres"), db1Failing, 12)
	want = &pb.View{Service: "postgres", Mode: pb.Mode_MODE_PRIMARY, Status: pb.Status_STATUS_READ_ONLY, Instances: []*pb.Instance{standby(db0), standby(db1Failing)}, Revision: 12}
	diffProto(t, "view after update", want, got)

	got = del(t, s, InstanceKey("ol-db0", "postgres"), 13)
	want = &pb.View{Service: "postgres", Mode: pb.Mode_MODE_PRIMARY, Status: pb.Status_STATUS_DOWN, Instances: []*pb.Instance{standby(db1Failing)}, Revision: 13}
	diffProto(t, "view after delete", want, got)
	diffProto(t, "View() after delete", want, s.View("postgres"))

	if got, want := s.Revision(), int64(13); got != want {
		t.Errorf("Revision() = %d, want %d", got, want)
	}
}

func TestStateApplyKeyOverridesValue(t *testing.T) {
	s := NewState()
	value := &pb.Instance{Host: "somewhere-else", Service: "solr", Address: "10.0.0.1:11211", Health: pb.Health_HEALTH_PASSING}
	got := put(t, s, InstanceKey("ol-mc0", "memcached"), value, 5)

	want := &pb.View{
		Service:   "memcached",
		Mode:      pb.Mode_MODE_POOL,
		Status:    pb.Status_STATUS_READ_WRITE,
		Instances: []*pb.Instance{{Host: "ol-mc0", Service: "memcached", Address: "10.0.0.1:11211", Health: pb.Health_HEALTH_PASSING}},
		Revision:  5,
	}
	diffProto(t, "view", want, got)
	if v := s.View("solr"); v != nil {
		t.Errorf("View(solr) = %v, want nil: the service comes from the key", v)
	}
	if got, want := s.Services(), []string{"memcached"}; !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}
}

func TestStateApplyPrimary(t *testing.T) {
	s := NewState()
	put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 1)
	put(t, s, InstanceKey("ol-db1", "postgres"), pgInstance("ol-db1", pb.Health_HEALTH_PASSING), 2)

	p := &pb.Primary{Host: "ol-db0", Address: "ol-db0:5432", Epoch: 3, Zone: "dc1"}
	got := put(t, s, PrimaryKey("postgres"), p, 4)
	if got.GetStatus() != pb.Status_STATUS_READ_WRITE || got.GetMode() != pb.Mode_MODE_PRIMARY || got.GetRevision() != 4 {
		t.Errorf("after primary put: mode %v status %v revision %d, want MODE_PRIMARY STATUS_READ_WRITE 4", got.GetMode(), got.GetStatus(), got.GetRevision())
	}
	diffProto(t, "primary", p, got.GetPrimary())

	got = del(t, s, PrimaryKey("postgres"), 5)
	if got.GetStatus() != pb.Status_STATUS_READ_ONLY || got.GetPrimary() != nil || got.GetRevision() != 5 {
		t.Errorf("after primary delete: status %v primary %v revision %d, want STATUS_READ_ONLY, nil, 5", got.GetStatus(), got.GetPrimary(), got.GetRevision())
	}
	if n := len(got.GetInstances()); n != 2 {
		t.Errorf("after primary delete: %d instances, want 2", n)
	}
}

// The primary's instance is ROLE_PRIMARY and the others ROLE_STANDBY; when
// the primary record goes, every instance is a standby again.
func TestStateApplyPrimaryRoles(t *testing.T) {
	s := NewState()
	put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 1)
	put(t, s, InstanceKey("ol-db1", "postgres"), pgInstance("ol-db1", pb.Health_HEALTH_PASSING), 2)
	roles := func(v *pb.View) []pb.Role {
		var out []pb.Role
		for _, in := range v.GetInstances() {
			out = append(out, in.GetRole())
		}
		return out
	}
	steps := []struct {
		name string
		do   func() *pb.View
		want []pb.Role
	}{
		{"no primary", func() *pb.View { return s.View("postgres") }, []pb.Role{pb.Role_ROLE_STANDBY, pb.Role_ROLE_STANDBY}},
		{"ol-db1 primary", func() *pb.View {
			return put(t, s, PrimaryKey("postgres"), &pb.Primary{Host: "ol-db1", Epoch: 3}, 3)
		}, []pb.Role{pb.Role_ROLE_STANDBY, pb.Role_ROLE_PRIMARY}},
		{"primary's instance updated", func() *pb.View {
			return put(t, s, InstanceKey("ol-db1", "postgres"), pgInstance("ol-db1", pb.Health_HEALTH_CRITICAL), 4)
		}, []pb.Role{pb.Role_ROLE_STANDBY, pb.Role_ROLE_PRIMARY}},
		{"ol-db0 primary", func() *pb.View {
			return put(t, s, PrimaryKey("postgres"), &pb.Primary{Host: "ol-db0", Epoch: 5}, 5)
		}, []pb.Role{pb.Role_ROLE_PRIMARY, pb.Role_ROLE_STANDBY}},
		{"primary record deleted", func() *pb.View { return del(t, s, PrimaryKey("postgres"), 6) }, []pb.Role{pb.Role_ROLE_STANDBY, pb.Role_ROLE_STANDBY}},
	}
	for _, st := range steps {
		if got := roles(st.do()); !slices.Equal(got, st.want) {
			t.Errorf("%s: roles %v, want %v", st.name, got, st.want)
		}
	}
	for host, in := range s.services["postgres"].instances {
		if in.GetRole() != pb.Role_ROLE_UNSPECIFIED {
			t.Errorf("stored instance %s has role %v, want none: roles belong to views", host, in.GetRole())
		}
	}
}

// A control record sets the paused flag of the service's view. Alone it
// makes no view, but it is kept: instances registered later are paused.
func TestStateApplyControl(t *testing.T) {
	s := NewState()
	paused := &pb.Control{Paused: true}
	pending := &pb.Control{SwitchoverFrom: "ol-db0", SwitchoverTo: "ol-db1"}
	isPaused := func(want bool) func(*pb.View) bool {
		return func(v *pb.View) bool { return v != nil && v.GetPaused() == want }
	}
	noView := func(v *pb.View) bool { return v == nil }
	steps := []struct {
		name      string
		do        func() (*pb.View, error)
		wantView  func(*pb.View) bool // on the returned view
		wantState func(*pb.View) bool // on View("postgres") afterwards
		wantErr   bool
	}{
		{"delete of an unknown control key", func() (*pb.View, error) { return s.Apply(ControlKey("postgres"), nil, 1) }, noView, noView, false},
		{"pause before any instance", func() (*pb.View, error) { return apply(s, ControlKey("postgres"), paused, 2) }, noView, noView, false},
		{"first instance is paused", func() (*pb.View, error) {
			return apply(s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 3)
		}, isPaused(true), isPaused(true), false},
		{"resume", func() (*pb.View, error) { return apply(s, ControlKey("postgres"), &pb.Control{}, 4) }, isPaused(false), isPaused(false), false},
		{"switchover request changes no view", func() (*pb.View, error) { return apply(s, ControlKey("postgres"), pending, 5) }, noView, isPaused(false), false},
		{"pause again", func() (*pb.View, error) { return apply(s, ControlKey("postgres"), paused, 6) }, isPaused(true), isPaused(true), false},
		{"corrupt control pauses nothing", func() (*pb.View, error) { return s.Apply(ControlKey("postgres"), []byte("{paused"), 7) }, isPaused(false), isPaused(false), true},
		{"pause once more", func() (*pb.View, error) { return apply(s, ControlKey("postgres"), paused, 8) }, isPaused(true), isPaused(true), false},
		{"delete control", func() (*pb.View, error) { return s.Apply(ControlKey("postgres"), nil, 9) }, isPaused(false), isPaused(false), false},
		{"pause for the last time", func() (*pb.View, error) { return apply(s, ControlKey("postgres"), paused, 10) }, isPaused(true), isPaused(true), false},
		{"last instance leaves", func() (*pb.View, error) { return s.Apply(InstanceKey("ol-db0", "postgres"), nil, 11) }, func(v *pb.View) bool {
			return v != nil && len(v.GetInstances()) == 0
		}, noView, false},
		{"it comes back still paused", func() (*pb.View, error) {
			return apply(s, InstanceKey("ol-db1", "postgres"), pgInstance("ol-db1", pb.Health_HEALTH_PASSING), 12)
		}, isPaused(true), isPaused(true), false},
	}
	for _, st := range steps {
		v, err := st.do()
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: error %v, want error: %v", st.name, err, st.wantErr)
		}
		if !st.wantView(v) {
			t.Errorf("%s: returned view %v is not as expected", st.name, v)
		}
		if got := s.View("postgres"); !st.wantState(got) {
			t.Errorf("%s: View(postgres) = %v is not as expected", st.name, got)
		}
	}
	if got, want := s.View("postgres").GetRevision(), int64(12); got != want {
		t.Errorf("view revision %d, want %d", got, want)
	}

	t.Run("a control record alone is no service", func(t *testing.T) {
		s := NewState()
		put(t, s, ControlKey("solr"), paused, 1)
		if got := s.Services(); len(got) != 0 {
			t.Errorf("Services() = %v, want none", got)
		}
		if got := s.Views(); len(got) != 0 {
			t.Errorf("Views() = %v, want none", got)
		}
		// Removing it forgets the service: a later instance is not paused.
		del(t, s, ControlKey("solr"), 2)
		if v := put(t, s, InstanceKey("ol-solr0", "solr"), &pb.Instance{}, 3); v.GetPaused() {
			t.Errorf("view after the control record was deleted is paused: %v", v)
		}
	})
}

// apply applies a put of m at key and returns what Apply returns.
func apply(s *State, key string, m proto.Message, rev int64) (*pb.View, error) {
	return s.Apply(key, []byte(MustEncode(m)), rev)
}

func TestStateApplyRemovesLastRecord(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		value   proto.Message
		deleted string // key deleted to remove the last record
	}{
		{"last instance", InstanceKey("ol-mc0", "memcached"), &pb.Instance{Health: pb.Health_HEALTH_PASSING}, InstanceKey("ol-mc0", "memcached")},
		{"primary only", PrimaryKey("memcached"), &pb.Primary{Host: "ol-mc0", Epoch: 9}, PrimaryKey("memcached")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			put(t, s, InstanceKey("ol-solr0", "solr"), &pb.Instance{Health: pb.Health_HEALTH_PASSING}, 1)
			put(t, s, tt.key, tt.value, 2)

			got := del(t, s, tt.deleted, 3)
			want := &pb.View{Service: "memcached", Mode: pb.Mode_MODE_POOL, Status: pb.Status_STATUS_DOWN, Revision: 3}
			diffProto(t, "view of the removed service", want, got)

			if v := s.View("memcached"); v != nil {
				t.Errorf("View(memcached) = %v, want nil after removal", v)
			}
			if got, want := s.Services(), []string{"solr"}; !slices.Equal(got, want) {
				t.Errorf("Services() = %v, want %v", got, want)
			}
			if got := s.Views(); len(got) != 1 || got[0].GetService() != "solr" {
				t.Errorf("Views() = %v, want only solr", got)
			}

			// A service that comes back starts afresh.
			got = put(t, s, InstanceKey("ol-mc1", "memcached"), &pb.Instance{}, 4)
			if hs := instanceHosts(got.GetInstances()); !slices.Equal(hs, []string{"ol-mc1"}) || got.GetPrimary() != nil {
				t.Errorf("view after re-adding: hosts %v primary %v, want [ol-mc1] and no primary", hs, got.GetPrimary())
			}
		})
	}
}

func TestStateApplyCorruptValue(t *testing.T) {
	corrupt := []byte(`{"health": 5`)

	t.Run("instance", func(t *testing.T) {
		s := NewState()
		db0 := pgInstance("ol-db0", pb.Health_HEALTH_PASSING)
		db1 := pgInstance("ol-db1", pb.Health_HEALTH_PASSING)
		put(t, s, InstanceKey("ol-db0", "postgres"), db0, 1)
		put(t, s, InstanceKey("ol-db1", "postgres"), db1, 2)

		key := InstanceKey("ol-db1", "postgres")
		got, err := s.Apply(key, corrupt, 3)
		if err == nil {
			t.Fatal("Apply(corrupt value) error = nil, want an error")
		}
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name the key %s", err, key)
		}
		want := &pb.View{Service: "postgres", Mode: pb.Mode_MODE_PRIMARY, Status: pb.Status_STATUS_READ_ONLY, Instances: []*pb.Instance{standby(db0)}, Revision: 3}
		diffProto(t, "view after corrupt put (record treated as absent)", want, got)
		diffProto(t, "View() after corrupt put", want, s.View("postgres"))
	})

	t.Run("empty value", func(t *testing.T) {
		s := NewState()
		put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 1)
		got, err := s.Apply(InstanceKey("ol-db0", "postgres"), []byte{}, 2)
		if err == nil {
			t.Fatal("Apply(empty value) error = nil, want an error (an empty value is a put, not a delete)")
		}
		if n := len(got.GetInstances()); n != 0 {
			t.Errorf("view has %d instances, want 0", n)
		}
	})

	t.Run("only record of a service", func(t *testing.T) {
		s := NewState()
		got, err := s.Apply(InstanceKey("ol-db0", "postgres"), corrupt, 1)
		if err == nil {
			t.Fatal("Apply(corrupt value) error = nil, want an error")
		}
		if n := len(got.GetInstances()); n != 0 {
			t.Errorf("view has %d instances, want 0", n)
		}
		if v := s.View("postgres"); v != nil {
			t.Errorf("View(postgres) = %v, want nil", v)
		}
		if got := s.Services(); len(got) != 0 {
			t.Errorf("Services() = %v, want none", got)
		}
	})

	t.Run("primary", func(t *testing.T) {
		s := NewState()
		put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 1)
		put(t, s, PrimaryKey("postgres"), &pb.Primary{Host: "ol-db0", Epoch: 2}, 2)
		got, err := s.Apply(PrimaryKey("postgres"), corrupt, 3)
		if err == nil {
			t.Fatal("Apply(corrupt primary) error = nil, want an error")
		}
		if got.GetPrimary() != nil || got.GetStatus() != pb.Status_STATUS_READ_ONLY {
			t.Errorf("view after corrupt primary: primary %v status %v, want nil and STATUS_READ_ONLY", got.GetPrimary(), got.GetStatus())
		}
	})

	t.Run("host", func(t *testing.T) {
		s := NewState()
		put(t, s, HostKey("ol-db0"), &pb.Host{Zone: "dc1"}, 1)
		v, err := s.Apply(HostKey("ol-db0"), corrupt, 2)
		if err == nil {
			t.Fatal("Apply(corrupt host) error = nil, want an error")
		}
		if v != nil {
			t.Errorf("Apply(corrupt host) view = %v, want nil", v)
		}
		if got := s.Hosts(); len(got) != 0 {
			t.Errorf("Hosts() = %v, want none", got)
		}
	})

	t.Run("member", func(t *testing.T) {
		s := NewState()
		put(t, s, MemberKey("etcd-dc1"), &pb.Member{Zone: "dc1"}, 1)
		v, err := s.Apply(MemberKey("etcd-dc1"), corrupt, 2)
		if err == nil {
			t.Fatal("Apply(corrupt member) error = nil, want an error")
		}
		if v != nil {
			t.Errorf("Apply(corrupt member) view = %v, want nil", v)
		}
		if m := s.Member("etcd-dc1"); m != nil {
			t.Errorf("Member(etcd-dc1) = %v, want nil", m)
		}
	})
}

func TestStateApplyHosts(t *testing.T) {
	s := NewState()
	if v := put(t, s, HostKey("ol-web1"), &pb.Host{Name: "wrong", Zone: "dc2", AgentVersion: "v1"}, 1); v != nil {
		t.Errorf("Apply(host) view = %v, want nil", v)
	}
	put(t, s, HostKey("ol-db0"), &pb.Host{Zone: "dc1"}, 2)
	put(t, s, HostKey("ol-web0"), &pb.Host{Zone: "cloud-a"}, 3)

	want := []*pb.Host{
		{Name: "ol-db0", Zone: "dc1"},
		{Name: "ol-web0", Zone: "cloud-a"},
		{Name: "ol-web1", Zone: "dc2", AgentVersion: "v1"},
	}
	diffProto(t, "Hosts()", want, s.Hosts())

	if v := del(t, s, HostKey("ol-web0"), 4); v != nil {
		t.Errorf("Apply(delete host) view = %v, want nil", v)
	}
	diffProto(t, "Hosts() after delete", []*pb.Host{want[0], want[2]}, s.Hosts())
	if got := s.Services(); len(got) != 0 {
		t.Errorf("Services() = %v, want none: hosts are not services", got)
	}
}

func TestStateApplyMembers(t *testing.T) {
	s := NewState()
	m := &pb.Member{Name: "wrong", Zone: "dc1", ClientUrls: []string{"http://10.0.0.1:2379"}}
	if v := put(t, s, MemberKey("etcd-dc1"), m, 1); v != nil {
		t.Errorf("Apply(member) view = %v, want nil", v)
	}
	want := &pb.Member{Name: "etcd-dc1", Zone: "dc1", ClientUrls: []string{"http://10.0.0.1:2379"}}
	diffProto(t, "Member(etcd-dc1)", want, s.Member("etcd-dc1"))
	if got := s.Member("etcd-dc2"); got != nil {
		t.Errorf("Member(etcd-dc2) = %v, want nil", got)
	}

	del(t, s, MemberKey("etcd-dc1"), 2)
	if got := s.Member("etcd-dc1"); got != nil {
		t.Errorf("Member(etcd-dc1) after delete = %v, want nil", got)
	}
}

func TestStateApplyBadKey(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		wantErr string
	}{
		{"outside prefix", "/elsewhere/postgres", "not under"},
		{"unknown folder", Prefix + "queues/postgres", "unknown folder"},
		{"malformed instance", Prefix + "instances/ol-db0", "want instances/<host>/<service>"},
		{"bad name", InstanceKey("ol db0", "postgres"), "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 1)
			before := s.View("postgres")

			v, err := s.Apply(tt.key, []byte(MustEncode(&pb.Instance{})), 2)
			if err == nil {
				t.Fatalf("Apply(%q) error = nil, want error containing %q", tt.key, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Apply(%q) error = %q, want it to contain %q", tt.key, err, tt.wantErr)
			}
			if v != nil {
				t.Errorf("Apply(%q) view = %v, want nil", tt.key, v)
			}
			if got := s.View("postgres"); got != before {
				t.Errorf("View(postgres) changed after a bad key")
			}
			if got, want := s.Services(), []string{"postgres"}; !slices.Equal(got, want) {
				t.Errorf("Services() = %v, want %v", got, want)
			}
			// The watch has moved past the key: the state is complete up to it.
			if got, want := s.Revision(), int64(2); got != want {
				t.Errorf("Revision() = %d, want %d", got, want)
			}
		})
	}
}

func TestStateApplyKeysWithoutView(t *testing.T) {
	keys := []string{LeaderKey("postgres"), EventKey("postgres", 3)}
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			s := NewState()
			for _, value := range [][]byte{[]byte(`{"host":"ol-db0"}`), []byte("not even json"), nil} {
				v, err := s.Apply(key, value, 7)
				if v != nil || err != nil {
					t.Errorf("Apply(%s, %q) = %v, %v; want nil, nil", key, value, v, err)
				}
			}
			if got := s.Services(); len(got) != 0 {
				t.Errorf("Services() = %v, want none", got)
			}
			if got, want := s.Revision(), int64(7); got != want {
				t.Errorf("Revision() = %d, want %d", got, want)
			}
		})
	}
}

func TestStateRevision(t *testing.T) {
	s := NewState()
	steps := []struct {
		name string
		do   func()
		want int64
	}{
		{"new state", func() {}, 0},
		{"put", func() { put(t, s, InstanceKey("a", "svc"), &pb.Instance{}, 5) }, 5},
		{"older revision ignored", func() { put(t, s, HostKey("a"), &pb.Host{}, 3) }, 5},
		{"SetRevision forward", func() { s.SetRevision(9) }, 9},
		{"SetRevision backward ignored", func() { s.SetRevision(2) }, 9},
		{"delete", func() { del(t, s, HostKey("a"), 10) }, 10},
	}
	for _, st := range steps {
		st.do()
		if got := s.Revision(); got != st.want {
			t.Errorf("%s: Revision() = %d, want %d", st.name, got, st.want)
		}
	}
}

func TestStateViewRevisionsPerService(t *testing.T) {
	s := NewState()
	put(t, s, InstanceKey("ol-db0", "postgres"), &pb.Instance{}, 3)
	put(t, s, InstanceKey("ol-mc0", "memcached"), &pb.Instance{}, 4)
	put(t, s, InstanceKey("ol-solr0", "solr"), &pb.Instance{}, 6)
	put(t, s, InstanceKey("ol-mc1", "memcached"), &pb.Instance{}, 8)
	put(t, s, HostKey("ol-db0"), &pb.Host{}, 9)

	type sr struct {
		Service  string
		Revision int64
	}
	var got []sr
	for _, v := range s.Views() {
		got = append(got, sr{v.GetService(), v.GetRevision()})
	}
	want := []sr{{"memcached", 8}, {"postgres", 3}, {"solr", 6}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Views() services and revisions (-want +got):\n%s", diff)
	}
	if got, want := s.Services(), []string{"memcached", "postgres", "solr"}; !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}
	if got, want := s.Revision(), int64(9); got != want {
		t.Errorf("Revision() = %d, want %d", got, want)
	}
}

// Views handed out are shared between streams, so later changes must not
// modify them.
func TestStateViewsAreImmutable(t *testing.T) {
	s := NewState()
	v1 := put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_PASSING), 1)
	put(t, s, PrimaryKey("postgres"), &pb.Primary{Host: "ol-db0", Epoch: 1}, 2)
	v2 := s.View("postgres")
	snap1, snap2 := proto.Clone(v1), proto.Clone(v2)

	put(t, s, InstanceKey("ol-db0", "postgres"), pgInstance("ol-db0", pb.Health_HEALTH_CRITICAL), 3)
	put(t, s, InstanceKey("ol-db1", "postgres"), pgInstance("ol-db1", pb.Health_HEALTH_PASSING), 4)
	put(t, s, PrimaryKey("postgres"), &pb.Primary{Host: "ol-db1", Epoch: 4}, 5)
	put(t, s, ControlKey("postgres"), &pb.Control{Paused: true}, 6)
	del(t, s, InstanceKey("ol-db0", "postgres"), 7)
	if _, err := s.Apply(InstanceKey("ol-db1", "postgres"), []byte("garbage"), 8); err == nil {
		t.Fatal("Apply(garbage) error = nil, want error")
	}

	diffProto(t, "first view after later changes", snap1, v1)
	diffProto(t, "second view after later changes", snap2, v2)
}

func TestNewStateIsEmpty(t *testing.T) {
	s := NewState()
	if s.Revision() != 0 || len(s.Services()) != 0 || len(s.Views()) != 0 || len(s.Hosts()) != 0 || s.View("x") != nil || s.Member("x") != nil {
		t.Errorf("NewState() is not empty: rev %d services %v views %v hosts %v", s.Revision(), s.Services(), s.Views(), s.Hosts())
	}
}
