package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/understudy-dev/understudy/agent/guard"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestGuardBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"empty socket", []string{"guard", "--socket", ""}, "--socket"},
		{"short watchdog timeout", []string{"guard", "--watchdog", "/dev/null", "--watchdog-timeout", "10ms"}, "--watchdog-timeout"},
		{"watchdog timeout not a duration", []string{"guard", "--watchdog-timeout", "soon"}, "--watchdog-timeout"},
		{"no arguments", []string{"guard", "extra"}, "extra"},
		{"bad log level", []string{"guard", "--socket", "/nonexistent/g.sock", "--log-level", "loud"}, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tt.args, io.Discard, &stderr); got != 2 {
				t.Errorf("exit status = %d, want 2; stderr: %s", got, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to name %q", stderr.String(), tt.want)
			}
		})
	}
}

// buildUnderstudy builds this command into a temporary directory.
func buildUnderstudy(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build understudy with")
	}
	bin := filepath.Join(t.TempDir(), "understudy")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// peerPID is the pid of the process answering on a unix socket.
func peerPID(t *testing.T, socket string) int {
	t.Helper()
	pid, err := socketPeerPID(socket)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func socketPeerPID(socket string) (int, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Pid), nil
}

// A real guard process started by Ensure lives in a session of its own,
// demotes a service whose client went away without disarming by its fence
// point, keeps running, and demotes what is armed when SIGTERM stops it.
func TestGuardProcess(t *testing.T) {
	bin := buildUnderstudy(t)
	dir, err := os.MkdirTemp("", "guard") // a socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "run", "guard.sock")
	demoted := filepath.Join(dir, "demoted")
	script := filepath.Join(dir, "demote.sh")
	body := "#!/bin/sh\necho \"$UNDERSTUDY_EPOCH $UNDERSTUDY_REASON\" >> " + demoted + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	runs := func() []string {
		b, _ := os.ReadFile(demoted)
		return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := guard.Ensure(ctx, socket, []string{bin, "guard", "--socket", socket, "--log-level", "debug"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pid := peerPID(t, socket)
	exited := false // then its pid may be someone else's
	t.Cleanup(func() {
		if !exited {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("guard's session = %d, %v; want its own, %d", sid, err, pid)
	}

	const fence = 500 * time.Millisecond
	armed := time.Now()
	if err := c.Arm(ctx, guard.Arm{Service: "pg", Epoch: 4, FenceIn: fence, Demote: []string{script}}); err != nil {
		t.Fatal(err)
	}
	c.Close() // not disarmed: as if the agent had been killed
	servertest.WaitUntil(t, fence+2*time.Second, "the demote hook", func() bool { return len(runs()) == 1 })
	if took := time.Since(armed); took < fence {
		t.Errorf("demoted %v after arming, before the fence point", took)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the guard did not survive: %v", err)
	}

	// A second Ensure finds the same guard.
	c, err = guard.Ensure(ctx, socket, []string{"/nonexistent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The hook wrote its line; a new term is refused until it has exited.
	servertest.WaitUntil(t, 5*time.Second, "the guard to record the demotion", func() bool {
		st, err := c.Status(ctx)
		return err == nil && len(st) == 1 && st[0].Fired && !st[0].Demoting
	})
	if err := c.Arm(ctx, guard.Arm{Service: "pg", Epoch: 5, FenceIn: time.Minute, Demote: []string{script}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	servertest.WaitUntil(t, 5*time.Second, "the guard to exit", func() bool { return syscall.Kill(pid, 0) != nil })
	exited = true
	want := []string{"4_the_agent_stopped_renewing_its_lease;_demoted_by_the_guard", "5_the_guard_was_stopped_while_the_service_was_armed;_demoted_by_the_guard"}
	if got := runs(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("demote runs = %q, want %q", got, want)
	}
	log, _ := os.ReadFile(socket + ".log")
	t.Logf("guard log:\n%s", log)
}
