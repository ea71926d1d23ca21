package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// understudy topology against a real three-member cluster: one member per
// zone survives every single-zone loss (exit 0); once two members record
// the same zone, that zone takes the quorum with it (exit 1, a warning
// naming it). --json says the same.
func TestTopologyCommand(t *testing.T) {
	c := servertest.StartCluster(t, 3)
	addr := c.Servers[0].GRPCAddr()
	hub := c.Servers[0].Hub()
	names := []string{"m1", "m2", "m3"}
	recorded := func(zones ...string) func() bool {
		return func() bool {
			for i, n := range names {
				if hub.Member(n).GetZone() != zones[i] {
					return false
				}
			}
			return true
		}
	}
	servertest.WaitUntil(t, 10*time.Second, "every member to record its zone", recorded("z1", "z2", "z3"))

	code, out, errOut := runCmd(t, "topology", "--registry", "127.0.0.1:1,"+addr)
	t.Logf("one member per zone:\n%s", out)
	if code != 0 {
		t.Fatalf("exit status %d, want 0; stdout %q stderr %q", code, out, errOut)
	}
	for _, w := range []string{
		"3 voting, quorum 2",
		"z1    m1       yes: 2 of 3 voting members left",
		"zones the cluster can lose, one at a time: 3 of 3",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout does not contain %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "warnings") {
		t.Errorf("stdout has warnings:\n%s", out)
	}

	// Two members in dc1, one in cloud: the design's example of a
	// placement that does not survive losing dc1.
	cli := c.Client(t)
	for i, zone := range []string{"dc1", "dc1", "cloud"} {
		m := c.Servers[i].Member()
		put(t, cli, registry.MemberKey(m.Name()), registry.MustEncode(&pb.Member{
			Name: m.Name(), Zone: zone, ClientUrls: m.ClientURLs(), PeerUrls: m.PeerURLs(),
		}))
	}
	servertest.WaitUntil(t, 10*time.Second, "the registry to read the new zones", recorded("dc1", "dc1", "cloud"))

	code, out, errOut = runCmd(t, "topology", "--registry", addr)
	t.Logf("dc1, dc1, cloud:\n%s", out)
	if code != 1 {
		t.Fatalf("exit status %d, want 1; stdout %q stderr %q", code, out, errOut)
	}
	for _, w := range []string{
		"cloud  m3       yes: 2 of 3 voting members left",
		"dc1    m1, m2   NO: 1 of 3 voting members left",
		"zones the cluster can lose, one at a time: 1 of 2",
		"warnings\n  losing zone dc1 takes 2 of 3 voting members (m1, m2): the cluster would lose its quorum",
		"notes\n  with voting members in two zones",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout does not contain %q:\n%s", w, out)
		}
	}
	if want := "not every single-zone loss is known to leave a quorum"; !strings.Contains(errOut, want) {
		t.Errorf("stderr %q does not contain %q", errOut, want)
	}

	code, out, errOut = runCmd(t, "topology", "--json", "--registry", addr)
	if code != 1 {
		t.Fatalf("--json: exit status %d, want 1; stderr %q", code, errOut)
	}
	var doc struct {
		Voters, Quorum int
		OK             bool
		Stale          bool
		Zones          []struct {
			Zone     string
			Members  []string
			Survives bool
		}
		Warnings []string
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if doc.Voters != 3 || doc.Quorum != 2 || doc.OK || doc.Stale || len(doc.Zones) != 2 || len(doc.Warnings) != 1 {
		t.Errorf("--json: %+v, want 3 voters, quorum 2, not ok, not stale, 2 zones, 1 warning:\n%s", doc, out)
	}
	if z := doc.Zones[1]; z.Zone != "dc1" || z.Survives || strings.Join(z.Members, ",") != "m1,m2" {
		t.Errorf("--json: zone %+v, want dc1 with m1,m2 not surviving", z)
	}
}

// Bad input exits with status 2 before any registry is asked.
func TestTopologyBadInput(t *testing.T) {
	for _, a := range [][]string{
		{"topology", "extra"},
		{"topology", "--json=maybe"},
	} {
		code, _, errOut := runCmd(t, a...)
		if code != 2 {
			t.Errorf("%q: exit status %d, want 2; stderr %q", a, code, errOut)
		}
	}
}
