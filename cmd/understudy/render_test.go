package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// render --once writes the current state from the first registry that
// answers and exits 0; with none answering it exits 1 and writes nothing.
func TestRenderOnce(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.tmpl")
	if err := os.WriteFile(tmpl, []byte(`{{ members "memcached" | addresses | join "," }}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, cli, registry.InstanceKey("h1", "memcached"), registry.MustEncode(&pb.Instance{
		Host: "h1", Service: "memcached", Zone: "z1", Address: "10.0.0.1:11211", Mode: pb.Mode_MODE_POOL, Health: pb.Health_HEALTH_PASSING,
	}))
	out := filepath.Join(dir, "out.txt")
	ran := filepath.Join(dir, "ran")
	// The registry may not have applied the write yet: retry until the
	// output shows it.
	var got []byte
	for range 50 {
		code, stdout, stderr := runCmd(t, "render", "--once", "--template", tmpl, "--out", out, "--exec", "touch "+ran,
			"--registry", "127.0.0.1:1,"+c.Servers[0].GRPCAddr(), "--log-level", "error")
		if code != 0 {
			t.Fatalf("render --once: exit %d; stdout %q stderr %q", code, stdout, stderr)
		}
		if got, _ = os.ReadFile(out); string(got) == "10.0.0.1:11211\n" {
			break
		}
	}
	if string(got) != "10.0.0.1:11211\n" {
		t.Fatalf("render --once wrote %q", got)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Errorf("--exec did not run: %v", err)
	}

	none := filepath.Join(dir, "none.txt")
	code, _, stderr := runCmd(t, "render", "--once", "--template", tmpl, "--out", none, "--registry", "127.0.0.1:1", "--log-level", "error")
	if code != 1 || !strings.Contains(stderr, "no registry answered") {
		t.Errorf("render --once with no registry: exit %d stderr %q, want 1 and %q", code, stderr, "no registry answered")
	}
	if _, err := os.Stat(none); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("render --once with no registry created %s (%v)", none, err)
	}
}
