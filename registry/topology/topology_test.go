package topology_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/registry/topology"
)

// members builds voting members from "name@zone" (zone may be empty).
func members(specs ...string) []topology.Member {
	var out []topology.Member
	for _, s := range specs {
		name, zone, _ := strings.Cut(s, "@")
		learner := false
		if n, ok := strings.CutSuffix(name, "+learner"); ok {
			name, learner = n, true
		}
		out = append(out, topology.Member{Name: name, Zone: zone, Learner: learner})
	}
	return out
}

// zones renders the zones of a report as "zone:members:yes|no" for comparison.
func zones(r topology.Report) string {
	var parts []string
	for _, z := range r.Zones {
		survives := "no"
		if z.Survives {
			survives = "yes"
		}
		parts = append(parts, fmt.Sprintf("%s:%s:%s", z.Name, strings.Join(z.Members, ","), survives))
	}
	return strings.Join(parts, " ")
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name       string
		members    []topology.Member
		wantVoters int
		wantQuorum int
		wantZones  string
		wantOK     bool
		// wantWarnings and wantNotes are substrings, one per warning or note,
		// in order; their counts must match exactly.
		wantWarnings []string
		wantNotes    []string
	}{
		{
			name:       "dc1 dc1 cloud does not survive losing dc1",
			members:    members("m1@dc1", "m2@dc1", "m3@cloud"),
			wantVoters: 3, wantQuorum: 2,
			wantZones:    "cloud:m3:yes dc1:m1,m2:no",
			wantWarnings: []string{"losing zone dc1 takes 2 of 3 voting members (m1, m2): the cluster would lose its quorum (2 needed, 1 left)"},
			wantNotes:    []string{"two zones"},
		},
		{
			name:       "2+2+1 over three zones survives every single-zone loss",
			members:    members("a1@dc1", "a2@dc1", "b1@dc2", "b2@dc2", "c1@cloud"),
			wantVoters: 5, wantQuorum: 3,
			wantZones: "cloud:c1:yes dc1:a1,a2:yes dc2:b1,b2:yes",
			wantOK:    true,
		},
		{
			name:       "1+1+1 over three zones",
			members:    members("m3@z3", "m1@z1", "m2@z2"),
			wantVoters: 3, wantQuorum: 2,
			wantZones: "z1:m1:yes z2:m2:yes z3:m3:yes",
			wantOK:    true,
		},
		{
			name:       "one member",
			members:    members("dev@dc1"),
			wantVoters: 1, wantQuorum: 1,
			wantZones:    "dc1:dev:no",
			wantWarnings: []string{"losing zone dc1 takes 1 of 1 voting members (dev)"},
			wantNotes:    []string{"one-member cluster"},
		},
		{
			name:       "all in one zone",
			members:    members("m1@dc1", "m2@dc1", "m3@dc1"),
			wantVoters: 3, wantQuorum: 2,
			wantZones:    "dc1:m1,m2,m3:no",
			wantWarnings: []string{"losing zone dc1 takes 3 of 3"},
			wantNotes:    []string{"all 3 voting members are in zone dc1"},
		},
		{
			name:       "4 members 2+2 survive neither loss",
			members:    members("m1@dc1", "m2@dc1", "m3@dc2", "m4@dc2"),
			wantVoters: 4, wantQuorum: 3,
			wantZones:    "dc1:m1,m2:no dc2:m3,m4:no",
			wantWarnings: []string{"losing zone dc1 takes 2 of 4", "losing zone dc2 takes 2 of 4"},
			wantNotes:    []string{"two zones", "4 voting members need 3 for a quorum and survive the loss of 1, no more than 3 would"},
		},
		{
			name:       "4 members 2+1+1 survive every single-zone loss but are even",
			members:    members("m1@dc1", "m2@dc2", "m3@dc2", "m4@cloud"),
			wantVoters: 4, wantQuorum: 3,
			wantZones:    "cloud:m4:yes dc1:m1:yes dc2:m2,m3:no",
			wantWarnings: []string{"losing zone dc2 takes 2 of 4"},
			wantNotes:    []string{"an odd number"},
		},
		{
			name:       "two members in two zones",
			members:    members("m1@dc1", "m2@dc2"),
			wantVoters: 2, wantQuorum: 2,
			wantZones:    "dc1:m1:no dc2:m2:no",
			wantWarnings: []string{"losing zone dc1", "losing zone dc2"},
			wantNotes:    []string{"two zones", "2 voting members need 2"},
		},
		{
			name:       "learners do not count toward the quorum",
			members:    members("m1@dc1", "m2@dc2", "m3@cloud", "m4+learner@dc1", "m5+learner@dc1"),
			wantVoters: 3, wantQuorum: 2,
			wantZones: "cloud:m3:yes dc1:m1:yes dc2:m2:yes",
			wantOK:    true,
			wantNotes: []string{"learners do not vote and do not count toward the quorum: m4, m5"},
		},
		{
			name:       "a learner-only zone survives its loss",
			members:    members("m1@dc1", "m2@dc1", "m3@dc2", "m4+learner@cloud"),
			wantVoters: 3, wantQuorum: 2,
			wantZones:    "cloud::yes dc1:m1,m2:no dc2:m3:yes",
			wantWarnings: []string{"losing zone dc1"},
			wantNotes:    []string{"two zones", "learners"},
		},
		{
			name:       "one unknown zone is a warning even when it survives",
			members:    members("m1@dc1", "m2@dc2", "m3@"),
			wantVoters: 3, wantQuorum: 2,
			wantZones:    "dc1:m1:yes dc2:m2:yes ?:m3:yes",
			wantWarnings: []string{`no zone is recorded for voting member m3: it is counted in zone "?"`},
		},
		{
			name:       "unknown zones are counted as one",
			members:    members("m2@", "m1@dc1", "m3@"),
			wantVoters: 3, wantQuorum: 2,
			wantZones: "dc1:m1:yes ?:m2,m3:no",
			wantWarnings: []string{
				"losing zone ? takes 2 of 3 voting members (m2, m3)",
				`no zone is recorded for voting members m2, m3: they are counted together in zone "?"`,
			},
			wantNotes: []string{"two zones"},
		},
		{
			name:         "no voting members",
			members:      members("m1+learner@dc1"),
			wantQuorum:   1,
			wantZones:    "dc1::no",
			wantWarnings: []string{"no voting members"},
		},
		{
			name:         "no members at all",
			wantQuorum:   1,
			wantWarnings: []string{"no voting members"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := topology.Compute(tt.members)
			if got.Voters != tt.wantVoters || got.Quorum != tt.wantQuorum {
				t.Errorf("voters %d quorum %d, want %d and %d", got.Voters, got.Quorum, tt.wantVoters, tt.wantQuorum)
			}
			if z := zones(got); z != tt.wantZones {
				t.Errorf("zones %q, want %q", z, tt.wantZones)
			}
			if got.OK != tt.wantOK {
				t.Errorf("OK = %v, want %v", got.OK, tt.wantOK)
			}
			if got.OK != (len(got.Warnings) == 0) {
				t.Errorf("OK = %v with warnings %q", got.OK, got.Warnings)
			}
			match(t, "warnings", got.Warnings, tt.wantWarnings)
			match(t, "notes", got.Notes, tt.wantNotes)
		})
	}
}

func match(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s %q, want %d matching %q", what, got, len(want), want)
		return
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("%s[%d] = %q, want it to contain %q", what, i, got[i], want[i])
		}
	}
}

// Compute reads its input without changing it, and the input order does
// not matter.
func TestComputeIsPure(t *testing.T) {
	in := members("m3@cloud", "m1@dc1", "m2@dc1")
	before := fmt.Sprint(in)
	a := topology.Compute(in)
	if fmt.Sprint(in) != before {
		t.Errorf("Compute changed its input: %v, was %s", in, before)
	}
	b := topology.Compute(members("m2@dc1", "m1@dc1", "m3@cloud"))
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("reports differ by input order:\n%v\n%v", a, b)
	}
}

func TestZoneLosses(t *testing.T) {
	r := topology.Compute(members("m1@dc1", "m2@dc1", "m3@cloud", "m4+learner@dc2"))
	if s, n := r.ZoneLosses(); s != 1 || n != 2 {
		t.Errorf("ZoneLosses() = %d, %d; want 1 of 2 (the learner-only zone does not count)", s, n)
	}
}
