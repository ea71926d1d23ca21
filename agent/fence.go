package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/understudy-dev/understudy/agent/guard"
	"github.com/understudy-dev/understudy/elector"
)

// fence feeds the host's guard: for each service whose term is armed, the
// fence point that follows from every renewed lease deadline. Feeding is
// done by the lease renewal itself, never by an elector's loop, so a stuck
// elector does not starve the guard and a stuck agent stops feeding it.
type fence struct {
	log    *slog.Logger
	socket string
	spawn  []string // argv starting a guard process; nil: one runs in-process
	margin time.Duration

	mu    sync.Mutex // serialises guard calls, so a disarm is never overtaken by a re-arm
	cli   *guard.Client
	terms map[string]guard.Arm // armed terms by service
	local context.CancelFunc   // stops the in-process guard
	done  chan struct{}

	// The last fence point the guard acknowledged, by service: read by
	// Acting on every request, so never behind mu.
	umu   sync.Mutex
	until map[string]acked
}

type acked struct {
	epoch int64
	at    time.Time
}

// fenceCallTimeout bounds one call to the guard from the renewal path.
const fenceCallTimeout = 250 * time.Millisecond

func newFence(log *slog.Logger, socket string, spawn []string, margin time.Duration) *fence {
	return &fence{log: log, socket: socket, spawn: spawn, margin: margin, terms: map[string]guard.Arm{}, until: map[string]acked{}}
}

// connect reaches the guard, starting it if nobody answers. Callers hold mu.
func (f *fence) connect(ctx context.Context) (*guard.Client, error) {
	if f.cli != nil {
		return f.cli, nil
	}
	if f.spawn == nil && f.local == nil {
		// In-process guard (tests, understudy dev): it fences what this
		// process's own loop would, and dies with it.
		gctx, cancel := context.WithCancel(context.Background())
		f.local, f.done = cancel, make(chan struct{})
		go func() {
			defer close(f.done)
			if err := guard.Serve(gctx, guard.Config{Socket: f.socket, Logger: f.log}); err != nil && gctx.Err() == nil {
				f.log.Error("agent: in-process guard stopped", "err", err)
			}
		}()
	}
	var err error
	deadline := time.Now().Add(3 * time.Second)
	for {
		if f.spawn != nil {
			f.cli, err = guard.Ensure(ctx, f.socket, f.spawn, f.log)
		} else {
			f.cli, err = guard.Dial(ctx, f.socket)
		}
		if err == nil || f.spawn != nil || time.Now().After(deadline) || ctx.Err() != nil {
			return f.cli, err
		}
		time.Sleep(20 * time.Millisecond) // the in-process guard is starting
	}
}

// refused reports whether the guard answered and said no, as opposed to not
// answering at all.
func refused(err error) bool {
	for _, r := range []error{guard.ErrStaleEpoch, guard.ErrDemoted, guard.ErrDemoting, guard.ErrBadRequest} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// close disconnects; armed terms stay armed in a guard process.
func (f *fence) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cli != nil {
		_ = f.cli.Close()
		f.cli = nil
	}
	if f.local != nil {
		f.local()
		<-f.done
		f.local = nil
		_ = os.RemoveAll(filepath.Dir(f.socket))
	}
}

// renewed re-arms every armed term with the fence point of the lease's new
// deadline. A guard that does not answer keeps its last fence point, and
// the elector stops acting by then too (Until).
func (f *fence) renewed(deadline time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for svc, a := range f.terms {
		ctx, cancel := context.WithTimeout(context.Background(), fenceCallTimeout)
		err := f.armLocked(ctx, a, deadline.Add(-f.margin))
		cancel()
		if err != nil {
			f.log.Warn("agent: could not feed the guard", "service", svc, "epoch", a.Epoch, "err", err)
		}
	}
}

// armLocked arms a until fenceAt. Callers hold mu.
func (f *fence) armLocked(ctx context.Context, a guard.Arm, fenceAt time.Time) error {
	cli, err := f.connect(ctx)
	if err != nil {
		return err
	}
	a.FenceIn = time.Until(fenceAt)
	err = cli.Arm(ctx, a)
	if err != nil && !refused(err) && f.spawn != nil {
		// The guard process is gone (killed, crashed): start a new one
		// and arm it, or this host could never act again.
		f.log.Warn("agent: the guard does not answer; starting it again", "err", err)
		_ = cli.Close()
		f.cli = nil
		if cli, err = f.connect(ctx); err == nil {
			a.FenceIn = time.Until(fenceAt)
			err = cli.Arm(ctx, a)
		}
	}
	if err != nil {
		return err
	}
	f.terms[a.Service] = a
	f.umu.Lock()
	f.until[a.Service] = acked{a.Epoch, fenceAt}
	f.umu.Unlock()
	return nil
}

// forService is the guard as one service's elector sees it.
func (f *fence) forService(service, host string, demote []string, timeout time.Duration) elector.Guard {
	return serviceGuard{f: f, service: service, host: host, demote: demote, timeout: timeout}
}

type serviceGuard struct {
	f             *fence
	service, host string
	demote        []string
	timeout       time.Duration
}

// ErrNoDemoteHook: a primary-mode service with no demote hook cannot be
// fenced by anything but the agent itself.
var errNoDemoteHook = errors.New("no demote hook configured: nothing could stop the service if the agent stopped")

func (g serviceGuard) Arm(ctx context.Context, epoch int64, fenceAt time.Time) error {
	if len(g.demote) == 0 {
		return errNoDemoteHook
	}
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	return g.f.armLocked(ctx, guard.Arm{Service: g.service, Epoch: epoch, Demote: g.demote, Timeout: g.timeout, Env: []string{
		"UNDERSTUDY_SERVICE=" + g.service, "UNDERSTUDY_HOST=" + g.host, "UNDERSTUDY_EPOCH=" + strconv.FormatInt(epoch, 10),
	}}, fenceAt)
}

func (g serviceGuard) Disarm(ctx context.Context, epoch int64) error {
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	if a, ok := g.f.terms[g.service]; ok && a.Epoch <= epoch {
		delete(g.f.terms, g.service)
		g.f.umu.Lock()
		delete(g.f.until, g.service)
		g.f.umu.Unlock()
	}
	cli, err := g.f.connect(ctx)
	if err != nil {
		return err
	}
	return cli.Disarm(ctx, g.service, epoch)
}

func (g serviceGuard) Until(epoch int64) time.Time {
	g.f.umu.Lock()
	defer g.f.umu.Unlock()
	if a := g.f.until[g.service]; a.epoch == epoch {
		return a.at
	}
	return time.Time{}
}

// defaultGuardSocket is where the guard listens unless configured: beside
// the state file, else in /run/understudy.
func defaultGuardSocket(cfg *Config) string {
	if cfg.StateFile != "" {
		return filepath.Join(filepath.Dir(cfg.StateFile), "guard.sock")
	}
	return filepath.Join("/run/understudy", cfg.Host+".guard.sock")
}

// inProcessGuardSocket is a fresh short path for an in-process guard: unix
// socket paths are limited to about 100 bytes.
func inProcessGuardSocket() (string, error) {
	dir, err := os.MkdirTemp("", "usg")
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "g.sock"), nil
}
