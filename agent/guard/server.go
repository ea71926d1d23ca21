package guard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Config of a guard.
type Config struct {
	// Socket is the unix socket's path. Its directory is created (0700) if
	// missing; a lock file Socket+".lock" beside it keeps a second guard out.
	Socket string
	// Logger gets what the guard does; nil logs text to stderr.
	Logger *slog.Logger
	// Watchdog is a watchdog device (/dev/watchdog) to open while services
	// are armed; empty for none.
	Watchdog string
	// WatchdogTimeout is set on the device; 0 means DefaultWatchdogTimeout.
	// At least a second (the device counts whole seconds).
	WatchdogTimeout time.Duration
}

// Validate checks cfg and names the offending field.
func (cfg Config) Validate() error {
	if cfg.Socket == "" {
		return errors.New("guard: Socket is empty")
	}
	if cfg.WatchdogTimeout != 0 && cfg.WatchdogTimeout < time.Second {
		return fmt.Errorf("guard: WatchdogTimeout %v: want at least 1s", cfg.WatchdogTimeout)
	}
	return nil
}

// Serve runs a guard on cfg.Socket until ctx is done. It returns ErrRunning
// (wrapped) at once if another guard holds the socket. A socket file nobody
// answers on is stale (a guard that was killed) and replaced.
//
// When ctx is done, Serve stops listening, closes the connections, lets
// demote hooks already running finish, then runs the demote hook of every
// service still armed, whatever its fence point, because nothing fences it
// once the guard is gone. It returns an error if one of them fails; the
// watchdog, if any, is then left running so that the kernel resets the host.
func Serve(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	lock, err := lockSocket(cfg.Socket)
	if err != nil {
		return err
	}
	defer lock.Close()
	ln, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	s := &server{log: log, tab: newTable(), wake: make(chan struct{}, 1), conns: map[net.Conn]struct{}{}}
	if cfg.Watchdog != "" {
		timeout := cfg.WatchdogTimeout
		if timeout == 0 {
			timeout = DefaultWatchdogTimeout
		}
		s.wd = &watchdog{path: cfg.Watchdog, timeout: timeout, log: log}
	}
	log.Info("guard: listening", "socket", cfg.Socket, "watchdog", cfg.Watchdog)
	return s.run(ctx, ln)
}

// lockSocket takes the lock file beside the socket, held for the guard's
// life: two guards started at once cannot both decide that the socket is
// stale and remove each other's.
func lockSocket(socket string) (*os.File, error) {
	f, err := os.OpenFile(socket+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrRunning, socket)
		}
		return nil, fmt.Errorf("guard: locking %s.lock: %w", socket, err)
	}
	return f, nil
}

// listen replaces a stale socket file and listens, mode 0600.
func listen(socket string) (net.Listener, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	switch {
	case err == nil:
		c.Close()
		return nil, fmt.Errorf("%w: %s", ErrRunning, socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		if err := os.Remove(socket); err != nil {
			return nil, fmt.Errorf("guard: removing stale socket: %w", err)
		}
	case !errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("guard: %w", err)
	}
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	// The directory is 0700 when the guard made it; this covers a shared one.
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("guard: %w", err)
	}
	return ln, nil
}

type server struct {
	log  *slog.Logger
	wake chan struct{} // the table changed: the scheduler looks again
	// hooks counts running demote hooks.
	hooks sync.WaitGroup

	mu        sync.Mutex
	tab       *table
	wd        *watchdog // nil without one
	wdErr     string    // last error of the watchdog, logged once
	wdOverdue bool      // petting stopped, logged once
	conns     map[net.Conn]struct{}
}

// run serves ln until ctx is done, then shuts down in order:
//  1. stop listening, close every connection and wait for their handlers;
//  2. stop the scheduler and wait for the demote hooks it started;
//  3. demote every service still armed;
//  4. stop petting; close the watchdog with the magic "V" unless a service
//     is still armed (its demote failed): then the kernel resets the host.
func (s *server) run(ctx context.Context, ln net.Listener) error {
	stopListening := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopListening()
	loopCtx, stopLoops := context.WithCancel(context.Background())
	defer stopLoops()
	var scheduler, petter, handlers sync.WaitGroup
	scheduler.Go(func() { s.schedule(loopCtx) })
	petCtx, stopPetting := context.WithCancel(context.Background())
	defer stopPetting()
	petter.Go(func() { s.pet(petCtx) })

	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// Keep guarding: the fence points do not need the listener.
			s.log.Error("guard: accept", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		handlers.Go(func() { s.serveConn(c) })
	}

	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	handlers.Wait()

	stopLoops()
	scheduler.Wait()
	s.hooks.Wait()

	s.mu.Lock()
	jobs := s.tab.stopping()
	s.mu.Unlock()
	for _, j := range jobs {
		s.log.Warn("guard: stopping while armed: demoting", "service", j.service, "epoch", j.epoch)
		s.hooks.Go(func() { s.demote(j) })
	}
	s.hooks.Wait()

	stopPetting()
	petter.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var failed []error
	for _, st := range s.tab.status(time.Now()) {
		if st.Armed {
			failed = append(failed, fmt.Errorf("%s epoch %d: %s", st.Service, st.Epoch, st.DemoteError))
		}
	}
	if s.wd != nil {
		if err := s.wd.close(len(failed) == 0); err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("guard: stopped with services not demoted: %w", errors.Join(failed...))
	}
	s.log.Info("guard: stopped")
	return nil
}

func (s *server) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		resp := s.handle(sc.Bytes())
		// A client that does not read its answers must not hold a handler.
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// handle answers one request line.
func (s *server) handle(line []byte) response {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return refusal(fmt.Errorf("%w: %v", ErrBadRequest, err))
	}
	now := time.Now()
	switch req.Op {
	case opArm:
		a := Arm{
			Service: req.Service, Epoch: req.Epoch, FenceIn: time.Duration(req.FenceInMS) * time.Millisecond,
			Demote: req.Demote, Env: req.Env, Timeout: time.Duration(req.TimeoutMS) * time.Millisecond,
		}
		if req.FenceAtMonoNS > 0 {
			if m := monoNow(); m > 0 {
				// Whatever delayed the request since it was made is
				// taken off, not added.
				a.FenceIn = time.Duration(req.FenceAtMonoNS) - m
			}
		}
		s.mu.Lock()
		err := s.tab.arm(a, now)
		if err == nil {
			s.tendWatchdog(now)
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("guard: arm refused", "service", a.Service, "epoch", a.Epoch, "err", err)
			return refusal(err)
		}
		s.log.Debug("guard: armed", "service", a.Service, "epoch", a.Epoch, "fence_in", a.FenceIn)
		s.poke()
	case opDisarm:
		if req.Service == "" {
			return refusal(fmt.Errorf("%w: disarm without a service", ErrBadRequest))
		}
		s.mu.Lock()
		s.tab.disarm(req.Service, req.Epoch)
		s.tendWatchdog(now)
		s.mu.Unlock()
		s.log.Debug("guard: disarmed", "service", req.Service, "epoch", req.Epoch)
		s.poke()
	case opStatus:
		s.mu.Lock()
		st := s.tab.status(now)
		s.mu.Unlock()
		resp := response{OK: true, Services: make([]serviceJSON, 0, len(st))}
		for _, x := range st {
			resp.Services = append(resp.Services, toJSON(x))
		}
		return resp
	default:
		return refusal(fmt.Errorf("%w: unknown op %q", ErrBadRequest, req.Op))
	}
	return response{OK: true}
}

func refusal(err error) response { return response{Error: err.Error(), Code: codeOf(err)} }

// poke wakes the scheduler.
func (s *server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// schedule starts the demote hooks whose time has come, until ctx is done.
func (s *server) schedule(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		jobs := s.tab.due(time.Now())
		next, ok := s.tab.next()
		s.mu.Unlock()
		for _, j := range jobs {
			s.log.Warn("guard: fence point passed: demoting", "service", j.service, "epoch", j.epoch)
			s.hooks.Go(func() { s.demote(j) })
		}
		wait := time.Hour
		if ok {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
	}
}

// demote runs j's hook and records the outcome.
func (s *server) demote(j job) {
	err := runHook(j, s.log)
	now := time.Now()
	s.mu.Lock()
	s.tab.finish(j, err, now)
	s.tendWatchdog(now)
	s.mu.Unlock()
	s.poke()
}

// pet tends the watchdog every WatchdogInterval until ctx is done.
func (s *server) pet(ctx context.Context) {
	if s.wd == nil {
		return
	}
	t := time.NewTicker(WatchdogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			s.tendWatchdog(now)
			s.mu.Unlock()
		}
	}
}

// tendWatchdog opens, pets or closes the watchdog as the table says. s.mu
// is held.
func (s *server) tendWatchdog(now time.Time) {
	if s.wd == nil {
		return
	}
	var err error
	if !s.tab.armed() {
		err = s.wd.close(true)
		s.wdOverdue = false
	} else {
		err = s.wd.open()
		overdue := s.tab.overdue(now)
		if overdue != s.wdOverdue && overdue {
			s.log.Error("guard: a fence point passed and the service is not demoted yet: watchdog not petted any more", "device", s.wd.path)
		}
		s.wdOverdue = overdue
		if err == nil && !overdue {
			err = s.wd.pet()
		}
	}
	msg := ""
	if err != nil {
		msg = err.Error()
		if msg != s.wdErr {
			s.log.Error("guard: watchdog", "err", err)
		}
	}
	s.wdErr = msg
}
