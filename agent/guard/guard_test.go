package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shortDir is a temporary directory with a short path: a unix socket's path
// must fit in 108 bytes, which a t.TempDir of a long test name may not.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "guard")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startGuard runs Serve on cfg (a fresh socket when cfg.Socket is empty)
// and returns its socket and a stop function returning Serve's error, also
// called at cleanup.
func startGuard(t *testing.T, cfg Config) (string, func() error) {
	t.Helper()
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(shortDir(t), "run", "guard.sock")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg) }()
	var (
		once sync.Once
		err  error
	)
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Serve did not return within 10s of its ctx being done")
			}
		})
		return err
	}
	stoppedByTest := false
	t.Cleanup(func() {
		if err := stop(); err != nil && !stoppedByTest {
			t.Error(err)
		}
	})
	servertest.WaitFor(t, 3*time.Second, "the guard to answer", func() error {
		c, err := net.Dial("unix", cfg.Socket)
		if err == nil {
			c.Close()
		}
		return err
	})
	return cfg.Socket, func() error { stoppedByTest = true; return stop() }
}

func dial(t *testing.T, socket string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := Dial(ctx, socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hook is a demote script that appends one line per successful run to a
// file, failing instead while the file fail exists.
type hook struct {
	argv          []string
	demoted, fail string
}

func newHook(t *testing.T) hook {
	t.Helper()
	dir := t.TempDir()
	h := hook{demoted: filepath.Join(dir, "demoted"), fail: filepath.Join(dir, "fail")}
	script := filepath.Join(dir, "demote.sh")
	body := fmt.Sprintf(`#!/bin/sh
if [ -e %q ]; then echo "service restarting" >&2; exit 1; fi
echo "$UNDERSTUDY_SERVICE $UNDERSTUDY_EPOCH $UNDERSTUDY_ROLE $EXTRA $UNDERSTUDY_REASON" >> %q
`, h.fail, h.demoted)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	h.argv = []string{script}
	return h
}

// runs returns the lines the hook wrote.
func (h hook) runs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(h.demoted)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (h hook) arm(epoch int64, fenceIn time.Duration) Arm {
	return Arm{Service: "pg", Epoch: epoch, FenceIn: fenceIn, Demote: h.argv, Env: []string{"EXTRA=x"}, Timeout: 5 * time.Second}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func status(t *testing.T, c *Client) ServiceStatus {
	t.Helper()
	st, err := c.Status(ctxT(t))
	if err != nil || len(st) != 1 {
		t.Fatalf("status = %+v, %v; want one service", st, err)
	}
	return st[0]
}

// An armed fence point that passes runs the demote hook once, with the env
// set, and a closed client connection does not disarm anything.
func TestGuardFiresOnceWithEnv(t *testing.T) {
	t.Parallel()
	socket, _ := startGuard(t, Config{})
	h := newHook(t)
	c := dial(t, socket)
	start := time.Now()
	if err := c.Arm(ctxT(t), h.arm(7, 300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	servertest.WaitUntil(t, 3*time.Second, "the demote hook", func() bool { return len(h.runs(t)) > 0 })
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("fired after %v, before its fence point", took)
	}
	want := "pg 7 standby x " + reasonFence
	if got := h.runs(t); len(got) != 1 || got[0] != want {
		t.Fatalf("runs = %q, want [%q]", got, want)
	}
	c = dial(t, socket)
	servertest.WaitFor(t, 3*time.Second, "the guard to record it", func() error {
		if st := status(t, c); st.Armed || !st.Fired || st.FiredEpoch != 7 || time.Since(st.FiredAt) > 5*time.Second || st.Attempts != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // a second run would show by now
	if got := h.runs(t); len(got) != 1 {
		t.Fatalf("fired %d times", len(got))
	}
}

// A fence point renewed in time, or disarmed, never fires.
func TestGuardRenewedOrDisarmedNeverFires(t *testing.T) {
	t.Parallel()
	socket, _ := startGuard(t, Config{})
	tests := []struct {
		name  string
		after func(c *Client, h hook) error
	}{
		{"renewed", func(c *Client, h hook) error {
			for range 8 {
				time.Sleep(100 * time.Millisecond)
				if err := c.Arm(ctxT(t), h.arm(7, 300*time.Millisecond)); err != nil {
					return err
				}
			}
			return c.Disarm(ctxT(t), "pg", 7)
		}},
		{"disarmed", func(c *Client, h hook) error { return c.Disarm(ctxT(t), "pg", 7) }},
		{"disarmed at a later epoch", func(c *Client, h hook) error { return c.Disarm(ctxT(t), "pg", 9) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t)
			c := dial(t, socket)
			if err := c.Arm(ctxT(t), h.arm(7, 300*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if err := tt.after(c, h); err != nil {
				t.Fatal(err)
			}
			time.Sleep(400 * time.Millisecond) // past the last fence point
			if got := h.runs(t); len(got) != 0 {
				t.Fatalf("fired: %q", got)
			}
			if st := status(t, c); st.Armed || st.Fired {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

// Epochs only go up: a lower one is refused, and the epoch the guard
// demoted is over.
func TestGuardRefusesStaleEpochs(t *testing.T) {
	t.Parallel()
	h := newHook(t) // before the guard: its cleanup demotes what is armed
	socket, _ := startGuard(t, Config{})
	c := dial(t, socket)
	if err := c.Arm(ctxT(t), h.arm(7, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Arm(ctxT(t), h.arm(6, time.Minute)); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("arm of a lower epoch: err = %v, want ErrStaleEpoch", err)
	}
	if err := c.Arm(ctxT(t), h.arm(7, 0)); err != nil {
		t.Fatal(err)
	}
	servertest.WaitUntil(t, 3*time.Second, "the demote hook", func() bool { return len(h.runs(t)) > 0 })
	servertest.WaitUntil(t, 3*time.Second, "the guard to record it", func() bool { return status(t, c).Fired })
	if err := c.Arm(ctxT(t), h.arm(7, time.Minute)); !errors.Is(err, ErrDemoted) {
		t.Fatalf("arm of the demoted epoch: err = %v, want ErrDemoted", err)
	}
	if err := c.Arm(ctxT(t), h.arm(8, time.Minute)); err != nil {
		t.Fatalf("arm of a new epoch: %v", err)
	}
	if err := c.Arm(ctxT(t), Arm{Service: "pg", Epoch: 9}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("arm without a demote command: err = %v, want ErrBadRequest", err)
	}
}

// A demote that fails (the service is restarting) is retried until it
// succeeds.
func TestGuardRetriesFailingDemote(t *testing.T) {
	t.Parallel()
	socket, _ := startGuard(t, Config{})
	h := newHook(t)
	if err := os.WriteFile(h.fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := dial(t, socket)
	if err := c.Arm(ctxT(t), h.arm(7, 0)); err != nil {
		t.Fatal(err)
	}
	servertest.WaitFor(t, 3*time.Second, "a failed attempt", func() error {
		if st := status(t, c); !st.Armed || st.DemoteError == "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	os.Remove(h.fail)
	servertest.WaitUntil(t, 3*time.Second, "the retry", func() bool { return len(h.runs(t)) > 0 })
	servertest.WaitFor(t, 3*time.Second, "the guard to record it", func() error {
		if st := status(t, c); st.Armed || !st.Fired || st.Attempts < 2 || st.DemoteError != "" {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

// A socket file left by a killed guard is replaced; a second guard on a
// socket in use gets ErrRunning.
func TestGuardSocketOwnership(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "guard.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody answers
	startGuard(t, Config{Socket: socket})
	dial(t, socket)
	fi, err := os.Stat(socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v; want mode 0600", fi.Mode(), err)
	}

	err = Serve(ctxT(t), Config{Socket: socket, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrRunning) {
		t.Fatalf("second Serve: %v, want ErrRunning", err)
	}
	dial(t, socket) // the first one still answers
}

// A guard stopped while a service is armed demotes it before returning.
func TestGuardStoppedWhileArmedDemotes(t *testing.T) {
	t.Parallel()
	socket, stop := startGuard(t, Config{})
	h := newHook(t)
	c := dial(t, socket)
	if err := c.Arm(ctxT(t), h.arm(7, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := "pg 7 standby x " + reasonShutdown
	if got := h.runs(t); len(got) != 1 || got[0] != want {
		t.Fatalf("runs = %q, want [%q]", got, want)
	}
}

// A guard stopped while a service is armed and its demote fails says so.
func TestGuardStoppedWithFailingDemoteFails(t *testing.T) {
	t.Parallel()
	socket, stop := startGuard(t, Config{})
	h := newHook(t)
	_ = os.WriteFile(h.fail, nil, 0o600)
	c := dial(t, socket)
	if err := c.Arm(ctxT(t), h.arm(7, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "pg epoch 7") {
		t.Fatalf("Serve = %v, want an error naming pg epoch 7", err)
	}
}

// The watchdog is petted while the fence point is ahead, not once it passed
// with the demote failing, and closed with the magic "V" once the demote
// succeeded and nothing is armed. A regular file stands in for the device.
func TestGuardWatchdog(t *testing.T) {
	t.Parallel()
	dev := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		b, err := os.ReadFile(dev)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	socket, _ := startGuard(t, Config{Watchdog: dev, WatchdogTimeout: time.Second})
	h := newHook(t)
	_ = os.WriteFile(h.fail, nil, 0o600)
	c := dial(t, socket)
	if err := c.Arm(ctxT(t), h.arm(7, 700*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	servertest.WaitUntil(t, 2*time.Second, "two pets", func() bool { return read() == "11" })
	servertest.WaitUntil(t, 3*time.Second, "a failed demote", func() bool { return status(t, c).DemoteError != "" })
	before := read()
	time.Sleep(3 * WatchdogInterval / 2)
	if after := read(); after != before {
		t.Fatalf("petted past a fence point with the demote failing: %q → %q", before, after)
	}
	os.Remove(h.fail)
	servertest.WaitUntil(t, 3*time.Second, "the magic close", func() bool { return strings.HasSuffix(read(), "V") })
	if got := read(); strings.Trim(got, "1") != "V" {
		t.Fatalf("watchdog got %q, want pets then one V", got)
	}
	if !bytes.Equal([]byte(read()), []byte(before+"V")) {
		t.Fatalf("watchdog got %q, want %q", read(), before+"V")
	}
}
