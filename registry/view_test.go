package registry

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

const (
	modePool      = pb.Mode_MODE_POOL
	modePrimary   = pb.Mode_MODE_PRIMARY
	healthPassing = pb.Health_HEALTH_PASSING
	healthFailing = pb.Health_HEALTH_CRITICAL
)

func testInstance(host string, mode pb.Mode, health pb.Health) *pb.Instance {
	return &pb.Instance{Host: host, Service: "svc", Mode: mode, Health: health, Address: host + ":1"}
}

func TestBuildView(t *testing.T) {
	prim := &pb.Primary{Host: "b", Address: "b:1", Epoch: 12}
	const (
		none    = pb.Role_ROLE_UNSPECIFIED
		primary = pb.Role_ROLE_PRIMARY
		standby = pb.Role_ROLE_STANDBY
	)
	tests := []struct {
		name       string
		instances  []*pb.Instance
		primary    *pb.Primary
		wantMode   pb.Mode
		wantStatus pb.Status
		wantRoles  []pb.Role // one per instance
	}{
		{"no records", nil, nil, modePool, pb.Status_STATUS_DOWN, nil},
		{"pool with a healthy member", []*pb.Instance{testInstance("a", modePool, healthFailing), testInstance("b", modePool, healthPassing)}, nil, modePool, pb.Status_STATUS_READ_WRITE, []pb.Role{none, none}},
		{"pool all healthy", []*pb.Instance{testInstance("a", modePool, healthPassing), testInstance("b", modePool, healthPassing)}, nil, modePool, pb.Status_STATUS_READ_WRITE, []pb.Role{none, none}},
		{"pool nothing healthy", []*pb.Instance{testInstance("a", modePool, healthFailing), testInstance("b", modePool, healthFailing)}, nil, modePool, pb.Status_STATUS_DOWN, []pb.Role{none, none}},
		{"pool health unspecified is not healthy", []*pb.Instance{testInstance("a", modePool, pb.Health_HEALTH_UNSPECIFIED)}, nil, modePool, pb.Status_STATUS_DOWN, []pb.Role{none}},
		{"mode unspecified is pool", []*pb.Instance{testInstance("a", pb.Mode_MODE_UNSPECIFIED, healthPassing)}, nil, modePool, pb.Status_STATUS_READ_WRITE, []pb.Role{none}},
		{"primary mode with primary", []*pb.Instance{testInstance("a", modePrimary, healthPassing), testInstance("b", modePrimary, healthPassing)}, prim, modePrimary, pb.Status_STATUS_READ_WRITE, []pb.Role{standby, primary}},
		{"primary mode with primary, standby failing", []*pb.Instance{testInstance("a", modePrimary, healthFailing), testInstance("b", modePrimary, healthPassing)}, prim, modePrimary, pb.Status_STATUS_READ_WRITE, []pb.Role{standby, primary}},
		{"primary record alone makes primary mode", nil, prim, modePrimary, pb.Status_STATUS_READ_WRITE, nil},
		{"primary record with pool instances", []*pb.Instance{testInstance("a", modePool, healthPassing)}, prim, modePrimary, pb.Status_STATUS_READ_WRITE, []pb.Role{standby}},
		{"no primary, healthy standby", []*pb.Instance{testInstance("a", modePrimary, healthFailing), testInstance("b", modePrimary, healthPassing)}, nil, modePrimary, pb.Status_STATUS_READ_ONLY, []pb.Role{standby, standby}},
		{"no primary, nothing healthy", []*pb.Instance{testInstance("a", modePrimary, healthFailing), testInstance("b", modePrimary, healthFailing)}, nil, modePrimary, pb.Status_STATUS_DOWN, []pb.Role{standby, standby}},
		{"one primary-mode instance makes primary mode", []*pb.Instance{testInstance("a", modePool, healthPassing), testInstance("b", modePrimary, healthFailing)}, nil, modePrimary, pb.Status_STATUS_READ_ONLY, []pb.Role{standby, standby}},
		{"primary on a host without an instance", []*pb.Instance{testInstance("a", modePrimary, healthPassing)}, &pb.Primary{Host: "gone", Epoch: 3}, modePrimary, pb.Status_STATUS_READ_WRITE, []pb.Role{standby}},
		{"stored role is overridden", []*pb.Instance{withRole(testInstance("a", modePrimary, healthPassing), primary), withRole(testInstance("b", modePrimary, healthPassing), standby)}, prim, modePrimary, pb.Status_STATUS_READ_WRITE, []pb.Role{standby, primary}},
		{"stored role is cleared in a pool", []*pb.Instance{withRole(testInstance("a", modePool, healthPassing), primary)}, nil, modePool, pb.Status_STATUS_READ_WRITE, []pb.Role{none}},
	}
	for _, tt := range tests {
		for _, paused := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/paused=%v", tt.name, paused), func(t *testing.T) {
				before := cloneInstances(tt.instances)
				got := BuildView("svc", tt.instances, tt.primary, paused, 42)
				wantPrimary := tt.primary
				if tt.wantMode != modePrimary {
					wantPrimary = nil
				}
				var wantInstances []*pb.Instance // already in host order
				for i, in := range tt.instances {
					wantInstances = append(wantInstances, withRole(proto.CloneOf(in), tt.wantRoles[i]))
				}
				want := &pb.View{
					Service:   "svc",
					Mode:      tt.wantMode,
					Status:    tt.wantStatus,
					Instances: wantInstances,
					Primary:   wantPrimary,
					Revision:  42,
					Paused:    paused,
				}
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Errorf("BuildView mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(before, tt.instances, protocmp.Transform()); diff != "" {
					t.Errorf("BuildView modified its input instances (-before +after):\n%s", diff)
				}
			})
		}
	}
}

// Stored records are shared with earlier views and other goroutines: a view
// that needs a role on an instance gets its own copy, and an instance that
// already has the right role is shared, not copied.
func TestBuildViewRolesDoNotMutateRecords(t *testing.T) {
	a := testInstance("a", modePrimary, healthPassing)
	b := withRole(testInstance("b", modePrimary, healthPassing), pb.Role_ROLE_PRIMARY)
	v := BuildView("svc", []*pb.Instance{a, b}, &pb.Primary{Host: "b", Epoch: 1}, false, 1)
	if a.GetRole() != pb.Role_ROLE_UNSPECIFIED {
		t.Errorf("stored instance a has role %v after BuildView, want it untouched", a.GetRole())
	}
	if v.GetInstances()[0] == a {
		t.Errorf("view shares instance a although its role differs from the stored one")
	}
	if v.GetInstances()[1] != b {
		t.Errorf("view copied instance b although its stored role is already right")
	}
}

func TestBuildViewSortsByHostWithoutMutatingInput(t *testing.T) {
	in := []*pb.Instance{testInstance("ol-web2", modePool, healthPassing), testInstance("ol-web0", modePool, healthFailing), testInstance("ol-web10", modePool, healthPassing), testInstance("ol-web1", modePool, healthPassing)}
	before := slices.Clone(in)

	v := BuildView("svc", in, nil, false, 1)

	var got []string
	for _, i := range v.GetInstances() {
		got = append(got, i.GetHost())
	}
	want := []string{"ol-web0", "ol-web1", "ol-web10", "ol-web2"}
	if !slices.Equal(got, want) {
		t.Errorf("view hosts = %v, want %v", got, want)
	}
	if !slices.Equal(in, before) {
		t.Errorf("BuildView reordered its input: got %v, want %v", instanceHosts(in), instanceHosts(before))
	}
	// The view owns its slice: changing it leaves the caller's alone.
	v.Instances[0] = nil
	if !slices.Equal(in, before) {
		t.Errorf("view shares its instances slice with the input")
	}
}

func TestBuildViewIsDeterministic(t *testing.T) {
	a := []*pb.Instance{testInstance("c", modePrimary, healthPassing), testInstance("a", modePrimary, healthFailing), testInstance("b", modePrimary, healthPassing)}
	b := []*pb.Instance{a[2], a[0], a[1]}
	p := &pb.Primary{Host: "c", Epoch: 3}
	va, vb := BuildView("svc", a, p, true, 5), BuildView("svc", b, p, true, 5)
	if diff := cmp.Diff(va, vb, protocmp.Transform()); diff != "" {
		t.Errorf("views from the same records in different order differ (-a +b):\n%s", diff)
	}
}

func TestHealthy(t *testing.T) {
	tests := []struct {
		name string
		view *pb.View
		want []string
	}{
		{"nil view", nil, nil},
		{"no instances", &pb.View{}, nil},
		{"mixed", &pb.View{Instances: []*pb.Instance{
			testInstance("a", modePool, healthPassing), testInstance("b", modePool, healthFailing), testInstance("c", modePool, pb.Health_HEALTH_UNSPECIFIED), testInstance("d", modePool, healthPassing),
		}}, []string{"a", "d"}},
		{"none healthy", &pb.View{Instances: []*pb.Instance{testInstance("a", modePool, healthFailing)}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := instanceHosts(Healthy(tt.view)); !slices.Equal(got, tt.want) {
				t.Errorf("Healthy = %v, want %v", got, tt.want)
			}
		})
	}
}

func withRole(in *pb.Instance, r pb.Role) *pb.Instance {
	in.Role = r
	return in
}

func cloneInstances(ins []*pb.Instance) []*pb.Instance {
	var out []*pb.Instance
	for _, in := range ins {
		out = append(out, proto.CloneOf(in))
	}
	return out
}

func instanceHosts(ins []*pb.Instance) []string {
	var out []string
	for _, i := range ins {
		out = append(out, i.GetHost())
	}
	return out
}
