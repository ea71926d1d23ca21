package supervise

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseProcfile(t *testing.T) {
	t.Setenv("E2E_HOST", "dc1")
	t.Setenv("E2E_APP", "kv --addr :8080")
	procs, err := ParseProcfile(strings.NewReader("# one host\n\nserver: /understudy server --name $E2E_HOST\napp:/e2ehost ${E2E_APP}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 2 || procs[0].Name != "server" || len(procs[0].Argv) != 4 || strings.Join(procs[1].Argv, " ") != "/e2ehost kv --addr :8080" || procs[0].Argv[3] != "dc1" {
		t.Fatalf("got %+v", procs)
	}
	for _, bad := range []string{"no colon here", ": cmd", "a b: cmd", "x:", "x: a\nx: b"} {
		if _, err := ParseProcfile(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "procfile line") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestartsACrashedProcessAndStopsInReverseOrder(t *testing.T) {
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	// Each process notes its name when asked to stop.
	proc := func(name string) Proc {
		return Proc{Name: name, Argv: []string{"sh", "-c",
			"trap 'echo " + name + " >> " + order + "; exit 0' TERM; echo up; while :; do sleep 0.05; done"}}
	}
	out := &syncBuffer{}
	cfg := Config{Procs: []Proc{proc("server"), proc("agent")}, RunDir: filepath.Join(dir, "run"),
		RestartDelay: 50 * time.Millisecond, StopTimeout: 5 * time.Second, Out: out}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()

	pid := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(cfg.RunDir, name+".pid"))
		return string(b)
	}
	waitFor(t, "both started", func() bool { return pid("server") != "" && pid("agent") != "" })
	first := pid("agent")
	if err := Kill(cfg.RunDir, "agent", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent restarted", func() bool { p := pid("agent"); return p != "" && p != first })
	if err := Kill(cfg.RunDir, "nosuch", syscall.SIGKILL); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("kill of an unknown process: %v", err)
	}
	// The restarted shell must have set its trap before it is asked to stop.
	waitFor(t, "agent up twice", func() bool { return strings.Count(out.String(), "agent | up") == 2 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(order)
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "agent,server" {
		t.Errorf("stop order %v, want agent then server\n%s", got, out)
	}
	if !strings.Contains(out.String(), "supervise | agent: exited") {
		t.Errorf("no exit line in output:\n%s", out)
	}
}

func TestAHeldProcessStartsWhenTheHoldEndsOrIsReleased(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Procs: []Proc{{Name: "agent", Argv: []string{"sh", "-c", "echo up; while :; do sleep 0.05; done"}}},
		RunDir: filepath.Join(dir, "run"), RestartDelay: 50 * time.Millisecond, StopTimeout: 5 * time.Second, Out: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	pid := func() string {
		b, _ := os.ReadFile(filepath.Join(cfg.RunDir, "agent.pid"))
		return string(b)
	}
	waitFor(t, "started", func() bool { return pid() != "" })

	crash := func(hold time.Duration) (string, time.Time) {
		t.Helper()
		p, at := pid(), time.Now()
		if err := Hold(cfg.RunDir, "agent", at.Add(hold)); err != nil {
			t.Fatal(err)
		}
		if err := Kill(cfg.RunDir, "agent", syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return p, at
	}
	// A hold that runs out.
	p, at := crash(400 * time.Millisecond)
	waitFor(t, "restarted after the hold", func() bool { q := pid(); return q != "" && q != p })
	if took := time.Since(at); took < 400*time.Millisecond {
		t.Errorf("restarted after %v, before the hold ended", took)
	}
	// A hold released early.
	p, at = crash(time.Hour)
	time.Sleep(200 * time.Millisecond)
	if pid() != p {
		t.Fatal("restarted while held")
	}
	if err := Release(cfg.RunDir, "agent"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restarted after the release", func() bool { q := pid(); return q != "" && q != p })
	if took := time.Since(at); took > 2*time.Second {
		t.Errorf("restarted %v after the crash", took)
	}
}
