// Package kvdemo is a fencing-aware key-value server for the end-to-end
// tests: the stand-in for a database in primary mode.
//
// It serves writes only while its agent's promote hook has told it "primary
// at epoch E" (POST /role), rejects every write carrying an epoch lower than
// the highest it has seen, and appends each accepted write to a log with
// host, epoch and time. The chaos checker reads those logs (GET /log, or the
// file itself) to prove that no two hosts accepted writes in overlapping
// terms.
//
// The promote hook alone cannot keep a frozen primary out: a host paused
// past its lease wakes up still believing it is primary, and writes queued
// in its sockets would be served before anything tells it otherwise. So
// each write also asks the local agent (GET /primary/SERVICE), which answers
// from its lease deadline. The write's accepted_at is the instant before
// that question: the agent said yes later, so the term was still valid then.
//
// Like a real database, the role survives a restart of the process (a
// promoted PostgreSQL stays promoted): an agent that resumes its lease after
// a reboot keeps the role without running the promote hook again. A server
// restored as primary of a term that has since ended is harmless in this
// mode: the agent no longer confirms that term.
//
// With Config.NoAsk the server behaves like PostgreSQL instead: it never
// asks the agent and ignores the epoch a client sends (a PostgreSQL client
// knows none). It takes every write while its hooks say primary, and logs
// (and answers) each one with its own host and current epoch. Only the
// demote hook stops it, so the "one primary" guarantees are then the
// agent's alone. The demote hook records the standby role on disk first
// (DemoteOnDisk), so that it also demotes a server that is down or
// restarting; Listen says how that is kept free of races.
package kvdemo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Roles told by the promote and demote hooks.
const (
	RolePrimary = "primary"
	RoleStandby = "standby"
)

// Config of one server.
type Config struct {
	// Host is this host's name, recorded with every accepted write.
	Host string
	// DataDir holds the write log; it survives restarts of the process.
	DataDir string
	// AgentURL is the local agent's HTTP base URL (http://127.0.0.1:7422);
	// empty skips the lease check (unit tests of the epoch rules only).
	AgentURL string
	// Service is the service name the agent knows this server by.
	Service string
	// NoAsk: take writes like PostgreSQL, without asking the agent and
	// without checking the client's epoch (see the package doc).
	NoAsk bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// RoleRequest is the body of POST /role.
type RoleRequest struct {
	Role  string `json:"role"`
	Epoch int64  `json:"epoch"`
}

// WriteRequest is the body of POST /write.
type WriteRequest struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Epoch  int64  `json:"epoch"`
	Writer string `json:"writer"`
	Seq    int64  `json:"seq"`
}

// Write is one accepted write, as logged.
type Write struct {
	Host       string    `json:"host"`
	Epoch      int64     `json:"epoch"`
	AcceptedAt time.Time `json:"accepted_at"`
	Key        string    `json:"key"`
	Value      string    `json:"value"`
	Writer     string    `json:"writer"`
	Seq        int64     `json:"seq"`
}

// State is what GET /state reports.
type State struct {
	Host     string `json:"host"`
	Role     string `json:"role"`
	Epoch    int64  `json:"epoch"`
	Highest  int64  `json:"highest"`
	Accepted int64  `json:"accepted"`
	Stale    int64  `json:"stale"`
	NoAsk    bool   `json:"noask"`
}

// Reasons a write is refused; each maps to one HTTP status.
var (
	// ErrStaleEpoch: the write carries an epoch lower than one seen before.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrNotPrimary: this server is not the primary of the write's epoch.
	ErrNotPrimary = errors.New("not the primary of this epoch")
	// ErrLeaseExpired: the local agent no longer vouches for the term.
	ErrLeaseExpired = errors.New("agent does not confirm the primary role")
)

// Server is the key-value server. Its methods are safe for concurrent use;
// writes and role changes are serialised, so a demote returns only after
// every write of the ending term has been logged.
type Server struct {
	cfg    Config
	client *http.Client

	mu    sync.Mutex
	state State
	data  map[string]string
	log   *os.File

	// slowUntil: GET /health answers late until then (POST /slow).
	slowMu    sync.Mutex
	slowUntil time.Time
}

// LogName is the write log in DataDir: one JSON Write a line.
const LogName = "writes.jsonl"

// Open loads the write log (to recover the highest epoch seen) and the
// role the hooks last set; a new server starts as a standby. A server that
// is about to serve should use Listen, which also closes the race with a
// demote hook.
func Open(cfg Config) (*Server, error) {
	var s *Server
	err := withRoleLock(cfg.DataDir, func() error {
		var err error
		s, err = openLocked(cfg)
		return err
	})
	return s, err
}

// openLocked is Open with the role lock held by the caller.
func openLocked(cfg Config) (*Server, error) {
	if cfg.Host == "" || cfg.Service == "" || cfg.DataDir == "" {
		return nil, errors.New("kvdemo: host, service and data dir are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.DataDir, LogName)
	if err := dropTornTail(path); err != nil {
		return nil, err
	}
	old, err := ReadLog(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		client: &http.Client{Timeout: 500 * time.Millisecond},
		state:  State{Host: cfg.Host, Role: RoleStandby, NoAsk: cfg.NoAsk},
		data:   map[string]string{},
		log:    f,
	}
	for _, w := range old {
		s.state.Highest = max(s.state.Highest, w.Epoch)
		s.data[w.Key] = w.Value
	}
	r, err := readRole(cfg.DataDir)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	s.state.Role, s.state.Epoch = r.Role, r.Epoch
	s.state.Highest = max(s.state.Highest, r.Epoch)
	return s, nil
}

// Close closes the write log.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Close()
}

// SetRole applies a promote or demote. A promotion to an epoch below the
// highest seen is refused: a newer term already exists.
func (s *Server) SetRole(r RoleRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Role {
	case RolePrimary:
		if r.Epoch <= 0 {
			return fmt.Errorf("epoch %d: want a positive epoch", r.Epoch)
		}
		if r.Epoch < s.state.Highest {
			return fmt.Errorf("%w: promote to epoch %d, highest seen %d", ErrStaleEpoch, r.Epoch, s.state.Highest)
		}
		s.state.Role, s.state.Epoch, s.state.Highest = RolePrimary, r.Epoch, r.Epoch
	case RoleStandby:
		s.state.Role = RoleStandby
	default:
		return fmt.Errorf("role %q: want %q or %q", r.Role, RolePrimary, RoleStandby)
	}
	return s.saveRole()
}

// dropTornTail cuts a last line the process died while appending, so that
// the next write starts on a line of its own.
func dropTornTail(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || len(b) == 0 || b[len(b)-1] == '\n' {
		return err
	}
	return os.Truncate(path, int64(bytes.LastIndexByte(b, '\n')+1))
}

// saveRole records the role under the role lock.
func (s *Server) saveRole() error {
	r := RoleRequest{Role: s.state.Role, Epoch: s.state.Epoch}
	return withRoleLock(s.cfg.DataDir, func() error { return writeRole(s.cfg.DataDir, r) })
}

// Write applies w if this server is the confirmed primary of w.Epoch; with
// NoAsk, if this server is primary at all, at its own epoch.
func (s *Server) Write(w WriteRequest) (Write, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.NoAsk {
		if s.state.Role != RolePrimary {
			return Write{}, fmt.Errorf("%w: role %s", ErrNotPrimary, s.state.Role)
		}
		return s.append(w, s.state.Epoch, s.cfg.Now())
	}
	if w.Epoch < s.state.Highest {
		s.state.Stale++
		return Write{}, fmt.Errorf("%w: %d < %d", ErrStaleEpoch, w.Epoch, s.state.Highest)
	}
	if w.Epoch > s.state.Highest {
		// A client knows of a newer term than ours: ours is over.
		s.state.Highest = w.Epoch
		s.state.Role = RoleStandby
	}
	if s.state.Role != RolePrimary || w.Epoch != s.state.Epoch {
		return Write{}, fmt.Errorf("%w %d (role %s at epoch %d)", ErrNotPrimary, w.Epoch, s.state.Role, s.state.Epoch)
	}
	at := s.cfg.Now()
	if err := s.confirm(); err != nil {
		return Write{}, err
	}
	return s.append(w, w.Epoch, at)
}

// append logs and applies an accepted write; s.mu is held.
func (s *Server) append(w WriteRequest, epoch int64, at time.Time) (Write, error) {
	rec := Write{Host: s.cfg.Host, Epoch: epoch, AcceptedAt: at, Key: w.Key, Value: w.Value, Writer: w.Writer, Seq: w.Seq}
	line, err := json.Marshal(rec)
	if err != nil {
		return Write{}, err
	}
	if _, err := s.log.Write(append(line, '\n')); err != nil {
		return Write{}, fmt.Errorf("write log: %w", err)
	}
	s.data[w.Key] = w.Value
	s.state.Accepted++
	return rec, nil
}

// confirm asks the local agent whether this host still holds the role.
func (s *Server) confirm() error {
	if s.cfg.AgentURL == "" {
		return nil
	}
	resp, err := s.client.Get(s.cfg.AgentURL + "/primary/" + s.cfg.Service)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrLeaseExpired, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: agent answered %s", ErrLeaseExpired, resp.Status)
	}
	return nil
}

// Get returns a key's value.
func (s *Server) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return v, ok
}

// State returns the current role and counters.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// SlowHealth makes GET /health answer only after a delay until d from now
// (d ≤ 0 ends it at once): a check that times out while the service
// still takes writes.
func (s *Server) SlowHealth(d time.Duration) {
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	s.slowUntil = s.cfg.Now().Add(d)
}

// healthDelay is how long GET /health waits before answering now.
func (s *Server) healthDelay() time.Duration {
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	return min(s.slowUntil.Sub(s.cfg.Now()), slowHealthDelay)
}

// slowHealthDelay bounds one slow answer of GET /health: far beyond any
// check timeout, short enough that answers resume soon after the end.
const slowHealthDelay = time.Second

// Path of the write log.
func (s *Server) Path() string { return filepath.Join(s.cfg.DataDir, LogName) }
