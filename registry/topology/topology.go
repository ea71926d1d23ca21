// Package topology works out, from the voting members of an etcd cluster
// and the zone each one runs in, which single-zone losses the cluster
// survives: losing a zone survives when the voting members outside it still
// form a quorum. It does no I/O; `understudy topology` and the server's
// check at start feed it the member list.
//
// Learners do not vote, so they neither count toward the quorum nor are
// needed for it. A voting member whose zone is not recorded (a server
// started without --zone, or one whose record is not written yet) is counted
// in the zone UnknownZone together with every other such member: as if they
// shared one failure domain, the cautious assumption. Because the answer
// can then be wrong either way, an unknown zone is also a warning.
package topology

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// UnknownZone holds the voting members whose zone is not recorded.
const UnknownZone = "?"

// Member is one etcd member.
type Member struct {
	// Name identifies the member in warnings. Members that have been added
	// but not started have no name yet; callers pass their ID instead.
	Name string
	// Zone is the member's failure domain; empty when not recorded.
	Zone string
	// Learner members do not vote.
	Learner bool
}

// Zone is one failure domain and what losing it does.
type Zone struct {
	Name string `json:"zone"`
	// Members are the voting members in the zone, sorted.
	Members []string `json:"members"`
	// Learners are the non-voting members in the zone, sorted.
	Learners []string `json:"learners,omitempty"`
	// Remaining is how many voting members are left when the zone is lost.
	Remaining int `json:"remaining"`
	// Survives reports whether Remaining is still a quorum.
	Survives bool `json:"survives"`
}

// Report is what Compute found.
type Report struct {
	// Voters is the number of voting members.
	Voters int `json:"voters"`
	// Quorum is how many voting members the cluster needs: a majority.
	Quorum int `json:"quorum"`
	// Zones are sorted by name, UnknownZone last.
	Zones []Zone `json:"zones"`
	// OK reports that there are no warnings: every single-zone loss leaves a
	// quorum and every voting member's zone is known.
	OK bool `json:"ok"`
	// Warnings say which zone can take the quorum with it, one per zone,
	// and which members have no zone recorded.
	Warnings []string `json:"warnings"`
	// Notes explain the placement without being a fault of their own: an
	// even number of voters, a single zone, two zones, learners.
	Notes []string `json:"notes"`
}

// Compute reports which single-zone losses a cluster of members survives.
// It is pure: members are read, never modified, and may be in any order.
func Compute(members []Member) Report {
	r := Report{Warnings: []string{}, Notes: []string{}}
	byName := map[string]*Zone{}
	var unknown, learners []string
	for _, m := range members {
		name := m.Zone
		if name == "" {
			name = UnknownZone
		}
		z := byName[name]
		if z == nil {
			z = &Zone{Name: name, Members: []string{}}
			byName[name] = z
		}
		if m.Learner {
			z.Learners = append(z.Learners, m.Name)
			learners = append(learners, m.Name)
			continue
		}
		r.Voters++
		z.Members = append(z.Members, m.Name)
		if m.Zone == "" {
			unknown = append(unknown, m.Name)
		}
	}
	r.Quorum = r.Voters/2 + 1
	for _, z := range byName {
		slices.Sort(z.Members)
		slices.Sort(z.Learners)
		z.Remaining = r.Voters - len(z.Members)
		z.Survives = z.Remaining >= r.Quorum
		r.Zones = append(r.Zones, *z)
	}
	slices.SortFunc(r.Zones, func(a, b Zone) int {
		if (a.Name == UnknownZone) != (b.Name == UnknownZone) {
			if a.Name == UnknownZone {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Name, b.Name)
	})

	if r.Voters == 0 {
		r.Warnings = append(r.Warnings, "no voting members: the cluster has no quorum to lose")
		return r
	}
	var votingZones []Zone
	for _, z := range r.Zones {
		if len(z.Members) > 0 {
			votingZones = append(votingZones, z)
		}
		if z.Survives {
			continue
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"losing zone %s takes %d of %d voting members (%s): the cluster would lose its quorum (%d needed, %d left)",
			z.Name, len(z.Members), r.Voters, strings.Join(z.Members, ", "), r.Quorum, z.Remaining))
	}
	switch len(unknown) {
	case 0:
	case 1:
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"no zone is recorded for voting member %s: it is counted in zone %q; give every server --zone",
			unknown[0], UnknownZone))
	default:
		slices.Sort(unknown)
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"no zone is recorded for voting members %s: they are counted together in zone %q, as if they shared one; give every server --zone",
			strings.Join(unknown, ", "), UnknownZone))
	}
	r.OK = len(r.Warnings) == 0

	switch {
	case r.Voters == 1:
		r.Notes = append(r.Notes, "a one-member cluster survives no member loss: run 3 or 5 members spread over three zones")
	case len(votingZones) == 1:
		r.Notes = append(r.Notes, fmt.Sprintf(
			"all %d voting members are in zone %s: losing it loses the cluster; spread them over three zones (for example 2+2+1)",
			r.Voters, votingZones[0].Name))
	case len(votingZones) == 2:
		r.Notes = append(r.Notes,
			"with voting members in two zones, one zone always holds at least half of them: a member in a third zone lets the cluster survive the loss of either")
	}
	if r.Voters%2 == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf(
			"%d voting members need %d for a quorum and survive the loss of %d, no more than %d would: an odd number is the better choice",
			r.Voters, r.Quorum, r.Voters-r.Quorum, r.Voters-1))
	}
	if len(learners) > 0 {
		slices.Sort(learners)
		r.Notes = append(r.Notes, "learners do not vote and do not count toward the quorum: "+strings.Join(learners, ", "))
	}
	return r
}

// ZoneLosses is how many of the zones holding voting members the cluster
// can lose, one at a time, and keep its quorum; and how many zones hold
// voting members.
func (r Report) ZoneLosses() (survivable, zones int) {
	for _, z := range r.Zones {
		if len(z.Members) == 0 {
			continue
		}
		zones++
		if z.Survives {
			survivable++
		}
	}
	return survivable, zones
}
