package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A call to a guard that does not answer (frozen) returns by its ctx's
// deadline.
func TestClientHonoursDeadline(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "frozen.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The kernel accepts connections in the backlog; nobody reads them.
	c := dial(t, socket)
	for _, call := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"arm", func(ctx context.Context) error {
			return c.Arm(ctx, Arm{Service: "pg", Epoch: 1, FenceIn: time.Second, Demote: []string{"true"}})
		}},
		{"disarm", func(ctx context.Context) error { return c.Disarm(ctx, "pg", 1) }},
		{"status", func(ctx context.Context) error { _, err := c.Status(ctx); return err }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := call.do(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want a deadline exceeded", call.name, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s took %v with a 100ms deadline", call.name, took)
		}
	}
}

// A client whose guard was restarted redials on its next call; many
// goroutines may share one client.
func TestClientRedialsAndIsConcurrent(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(shortDir(t), "guard.sock")
	h := newHook(t)
	_, stop := startGuard(t, Config{Socket: socket})
	c := dial(t, socket)
	if _, err := c.Status(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	startGuard(t, Config{Socket: socket})
	if _, err := c.Status(ctxT(t)); err != nil {
		t.Fatalf("status after the guard restarted: %v", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			a := h.arm(1, time.Minute)
			a.Service = fmt.Sprintf("svc%d", i)
			if err := c.Arm(ctxT(t), a); err != nil {
				errs <- err
				return
			}
			errs <- c.Disarm(ctxT(t), a.Service, 1)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.Status(ctxT(t))
	if err != nil || len(st) != 20 {
		t.Fatalf("status: %d services, %v; want 20", len(st), err)
	}
	for _, s := range st {
		if s.Armed || s.Fired {
			t.Errorf("%+v: want neither armed nor fired", s)
		}
	}
}

// An arm request that reaches the guard late (the agent frozen between
// making and sending it) does not move the fence point later: it travels on
// the host's monotonic clock.
func TestArmDelayedInTransitKeepsItsFencePoint(t *testing.T) {
	s := &server{log: slog.New(slog.DiscardHandler), tab: newTable(), wake: make(chan struct{}, 1)}
	line, _ := json.Marshal(request{Op: opArm, Service: "db", Epoch: 1, FenceInMS: 300,
		FenceAtMonoNS: int64(monoNow() + 300*time.Millisecond), Demote: []string{"true"}})
	time.Sleep(200 * time.Millisecond) // the request sat somewhere
	if resp := s.handle(line); !resp.OK {
		t.Fatalf("arm refused: %s", resp.Error)
	}
	st := s.tab.status(time.Now())
	if len(st) != 1 || st[0].FenceIn > 150*time.Millisecond {
		t.Fatalf("fence in %v after a 200ms delay; want about 100ms left of the 300ms meant", st[0].FenceIn)
	}
}
