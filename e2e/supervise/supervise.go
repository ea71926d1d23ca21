// Package supervise is the init process of an end-to-end test host: a
// container built FROM scratch has no shell and no init system, yet stands
// in for a VM that runs an etcd member, an agent and the services it checks.
//
// It starts the processes of a Procfile in order, restarts any that exits
// (as systemd's Restart=always would), writes each one's PID to a file so
// that `e2ehost kill NAME` can crash it (Hold keeps a crashed process down
// for a while, Release lets it start again), and on SIGTERM stops them in
// reverse order so that the agent demotes and revokes before the services
// and the etcd member go away.
package supervise

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one line of a Procfile: "name: command arg...".
type Proc struct {
	Name string
	Argv []string
}

// ParseProcfile reads "name: command arg..." lines; blank lines and lines
// starting with # are skipped. $VAR and ${VAR} are replaced from the
// environment (so one Procfile serves every host of a topology), then
// arguments are split on white space.
func ParseProcfile(r io.Reader) ([]Proc, error) {
	var procs []Proc
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		argv := strings.Fields(os.ExpandEnv(cmd))
		switch {
		case !ok || name == "" || strings.ContainsAny(name, " \t/"):
			return nil, fmt.Errorf("procfile line %d: want \"name: command args\"", n)
		case len(argv) == 0:
			return nil, fmt.Errorf("procfile line %d: %s has no command", n, name)
		case seen[name]:
			return nil, fmt.Errorf("procfile line %d: %s defined twice", n, name)
		}
		seen[name] = true
		procs = append(procs, Proc{Name: name, Argv: argv})
	}
	return procs, sc.Err()
}

// Config of a supervisor.
type Config struct {
	Procs []Proc
	// RunDir holds NAME.pid files.
	RunDir string
	// RestartDelay is the pause before a process that exited is started again.
	RestartDelay time.Duration
	// StopTimeout bounds each process's graceful stop before SIGKILL.
	StopTimeout time.Duration
	// Out receives every process's output, each line prefixed with its name.
	Out io.Writer
}

// Run starts every process and keeps them running until ctx is done, then
// stops them in reverse order and returns.
func Run(ctx context.Context, cfg Config) error {
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return err
	}
	out := &lockedWriter{w: cfg.Out}
	sups := make([]*supervised, len(cfg.Procs))
	var wg sync.WaitGroup
	for i, p := range cfg.Procs {
		s := &supervised{proc: p, cfg: cfg, out: out, stop: make(chan struct{}), stopped: make(chan struct{})}
		sups[i] = s
		wg.Go(s.loop)
	}
	<-ctx.Done()
	for i := len(sups) - 1; i >= 0; i-- {
		sups[i].shutdown()
	}
	wg.Wait()
	return nil
}

type supervised struct {
	proc    Proc
	cfg     Config
	out     *lockedWriter
	stop    chan struct{}
	stopped chan struct{}

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (s *supervised) pidFile() string { return filepath.Join(s.cfg.RunDir, s.proc.Name+".pid") }

func (s *supervised) loop() {
	defer close(s.stopped)
	for {
		done, err := s.start()
		if err != nil {
			s.logf("start failed: %v", err)
		} else {
			err := <-done
			s.logf("exited: %v", exitText(err))
		}
		if !s.waitRestart() {
			return
		}
	}
}

// waitRestart waits RestartDelay, or while a hold lasts, and reports
// whether to start the process again (false: the supervisor stops).
func (s *supervised) waitRestart() bool {
	delay := time.After(s.cfg.RestartDelay)
	tick := time.NewTicker(holdPoll)
	defer tick.Stop()
	held := false
	for {
		until, ok := readHold(s.cfg.RunDir, s.proc.Name)
		switch {
		case ok && time.Now().Before(until):
			if !held {
				s.logf("held down until %s", until.Format(time.TimeOnly))
				held = true
			}
		case held:
			_ = Release(s.cfg.RunDir, s.proc.Name)
			return s.wait(nil)
		default:
			_ = Release(s.cfg.RunDir, s.proc.Name) // a hold that ended
			return s.wait(delay)
		}
		if !s.wait(tick.C) {
			return false
		}
	}
}

// wait waits for ch (nil: not at all) unless the supervisor stops first.
func (s *supervised) wait(ch <-chan time.Time) bool {
	if ch == nil {
		select {
		case <-s.stop:
			return false
		default:
			return true
		}
	}
	select {
	case <-s.stop:
		return false
	case <-ch:
		return true
	}
}

// holdPoll is how often a held process's hold file is read again.
const holdPoll = 100 * time.Millisecond

func holdFile(runDir, name string) string { return filepath.Join(runDir, name+".hold") }

// Hold keeps process NAME from being restarted before until, should it
// exit (set it before crashing the process). Release ends a hold early.
func Hold(runDir, name string, until time.Time) error {
	return os.WriteFile(holdFile(runDir, name), []byte(until.Format(time.RFC3339Nano)+"\n"), 0o644)
}

// Release ends a hold: a held process starts again within holdPoll.
func Release(runDir, name string) error {
	err := os.Remove(holdFile(runDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func readHold(runDir, name string) (time.Time, bool) {
	b, err := os.ReadFile(holdFile(runDir, name))
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	return t, err == nil
}

func (s *supervised) start() (<-chan error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return nil, errors.New("stopping")
	default:
	}
	cmd := exec.Command(s.proc.Argv[0], s.proc.Argv[1:]...)
	w := &prefixWriter{prefix: s.proc.Name + " | ", out: s.out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.cmd = cmd
	_ = os.WriteFile(s.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	s.logf("started, pid %d", cmd.Process.Pid)
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		w.flush()
		s.mu.Lock()
		s.cmd = nil
		s.mu.Unlock()
		done <- err
	}()
	return done, nil
}

// shutdown stops the process with SIGTERM, then SIGKILL after StopTimeout,
// and waits until its loop has ended.
func (s *supervised) shutdown() {
	s.mu.Lock()
	close(s.stop)
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.stopped:
	case <-time.After(s.cfg.StopTimeout):
		if cmd != nil {
			s.logf("no exit after %v: SIGKILL", s.cfg.StopTimeout)
			_ = cmd.Process.Kill()
		}
		<-s.stopped
	}
	_ = os.Remove(s.pidFile())
}

func (s *supervised) logf(format string, args ...any) {
	s.out.write(fmt.Appendf(nil, "supervise | %s: "+format+"\n", append([]any{s.proc.Name}, args...)...))
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// Kill sends sig to the supervised process NAME, found by its PID file.
func Kill(runDir, name string, sig syscall.Signal) error {
	b, err := os.ReadFile(filepath.Join(runDir, name+".pid"))
	if err != nil {
		return fmt.Errorf("process %q: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("process %q: bad pid file: %w", name, err)
	}
	return syscall.Kill(pid, sig)
}

// lockedWriter keeps lines of different processes from interleaving.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) write(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}

// prefixWriter writes whole lines, each prefixed.
type prefixWriter struct {
	prefix string
	out    *lockedWriter
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		p.out.write(append([]byte(p.prefix), p.buf[:i+1]...))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		p.out.write(append([]byte(p.prefix), append(p.buf, '\n')...))
		p.buf = nil
	}
}
