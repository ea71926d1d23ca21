package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// runCmd runs one command line and returns its exit status and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func put(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

// The operator commands against a real registry: accepted requests exit 0
// and say what was asked, refusals exit 1 with the server's reason (from the
// first registry that answers), and status shows the primary, the pause and
// the recent events.
func TestOperatorCommands(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	addr := c.Servers[0].GRPCAddr()
	for _, in := range []*pb.Instance{
		{Host: "h1", Health: pb.Health_HEALTH_PASSING},
		{Host: "h2", Health: pb.Health_HEALTH_PASSING},
		{Host: "h3", Health: pb.Health_HEALTH_CRITICAL, CheckOutput: "connection refused"},
	} {
		in.Service, in.Zone, in.Mode, in.Address = "pg", "z1", pb.Mode_MODE_PRIMARY, in.GetHost()+":5432"
		put(t, cli, registry.InstanceKey(in.GetHost(), "pg"), registry.MustEncode(in))
	}
	epoch := put(t, cli, registry.LeaderKey("pg"), registry.MustEncode(&pb.Leader{Host: "h1", Zone: "z1"}))
	put(t, cli, registry.PrimaryKey("pg"), registry.MustEncode(&pb.Primary{Host: "h1", Zone: "z1", Address: "h1:5432", Epoch: epoch}))

	steps := []struct {
		args       []string
		wantCode   int
		wantOut    []string
		wantErr    []string
		notWantErr string
	}{
		{[]string{"switchover", "pg", "--to", "h3"}, 1, nil, []string{"h3 is unhealthy", "connection refused"}, "no registry answered"},
		{[]string{"switchover", "pg", "--to", "h2"}, 0, []string{"switchover of pg requested: h1 hands over to h2"}, nil, ""},
		{[]string{"switchover", "pg"}, 1, nil, []string{"already pending"}, ""},
		{[]string{"pause", "pg"}, 0, []string{"pg paused"}, nil, ""},
		{[]string{"pause", "nosuch"}, 1, nil, []string{"unknown service", "nosuch"}, ""},
		{[]string{"events", "pg", "--limit", "1"}, 0, []string{"PAUSED", "switchover from h1 to h2 dropped"}, nil, ""},
		{[]string{"events", "nosuch"}, 0, nil, []string{"no events of nosuch"}, ""},
	}
	for _, st := range steps {
		t.Run(strings.Join(st.args, " "), func(t *testing.T) {
			// A dead registry first: the live one is tried next, and its
			// refusal is the answer.
			code, out, errOut := runCmd(t, append(st.args, "--registry", "127.0.0.1:1,"+addr)...)
			if code != st.wantCode {
				t.Fatalf("exit status %d, want %d; stdout %q stderr %q", code, st.wantCode, out, errOut)
			}
			for _, w := range st.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q does not contain %q", out, w)
				}
			}
			for _, w := range st.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not contain %q", errOut, w)
				}
			}
			if st.notWantErr != "" && strings.Contains(errOut, st.notWantErr) {
				t.Errorf("stderr %q contains %q", errOut, st.notWantErr)
			}
		})
	}

	t.Run("events --json", func(t *testing.T) {
		code, out, errOut := runCmd(t, "events", "pg", "--json", "--registry", addr)
		if code != 0 {
			t.Fatalf("exit status %d; stderr %q", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var kinds []string
		for _, l := range lines {
			var ev struct{ Kind, Host string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			kinds = append(kinds, ev.Kind)
		}
		if want := "[EVENT_KIND_SWITCHOVER_REQUESTED EVENT_KIND_PAUSED]"; fmt.Sprint(kinds) != want {
			t.Errorf("event kinds %v, want %s", kinds, want)
		}
	})

	t.Run("status", func(t *testing.T) {
		hub := c.Servers[0].Hub()
		deadline := time.Now().Add(10 * time.Second)
		for !hub.View("pg").GetPaused() {
			if time.Now().After(deadline) {
				t.Fatal("the registry's view of pg is not paused within 10s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		code, out, errOut := runCmd(t, "status", "--registry", addr)
		if code != 0 {
			t.Fatalf("exit status %d; stderr %q", code, errOut)
		}
		t.Logf("status:\n%s", out)
		for _, w := range []string{
			"READ_WRITE PAUSED",
			fmt.Sprintf("h1@z1 epoch=%d", epoch),
			"recent events",
			fmt.Sprintf("SWITCHOVER_REQUESTED h1 epoch=%d operator switchover to h2", epoch),
			"PAUSED - paused by operator",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("status output does not contain %q:\n%s", w, out)
			}
		}

		code, out, errOut = runCmd(t, "status", "--json", "--registry", addr)
		if code != 0 {
			t.Fatalf("status --json: exit status %d; stderr %q", code, errOut)
		}
		var doc struct {
			Events map[string][]struct{ Kind string } `json:"events"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if n := len(doc.Events["pg"]); n != 2 {
			t.Errorf("status --json: %d events of pg, want 2:\n%s", n, out)
		}
	})
}
