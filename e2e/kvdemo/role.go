package kvdemo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Files in DataDir besides the write log.
const (
	// roleName holds the last role and epoch the hooks set.
	roleName = "role.json"
	// lockName is flocked by whoever reads or writes the role file, and by
	// a starting server from reading it until it listens (see Listen).
	lockName = "role.lock"
)

// withRoleLock runs fn holding the data dir's role lock. The lock is an
// flock on a file of its own, so it is released when the holder dies.
func withRoleLock(dir string, fn func() error) error {
	unlock, err := lockRole(dir)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

func lockRole(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockName, err)
	}
	return func() { _ = f.Close() }, nil
}

// readRole reads the role file; a data dir without one is a standby's.
func readRole(dir string) (RoleRequest, error) {
	b, err := os.ReadFile(filepath.Join(dir, roleName))
	if errors.Is(err, os.ErrNotExist) {
		return RoleRequest{Role: RoleStandby}, nil
	}
	if err != nil {
		return RoleRequest{}, err
	}
	var r RoleRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return RoleRequest{}, fmt.Errorf("kvdemo: %s: %w", roleName, err)
	}
	return r, nil
}

// writeRole records the role atomically, as a database records promotion.
func writeRole(dir string, r RoleRequest) error {
	b, _ := json.Marshal(r)
	tmp := filepath.Join(dir, roleName+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, roleName))
}

// DemoteOnDisk records the standby role in dir's role file (keeping the
// epoch), whether or not a server runs on it: the counterpart of
// PostgreSQL's standby.signal. A server that starts afterwards starts as a
// standby; a running one must still be told (POST /role), which the hook
// does next.
func DemoteOnDisk(dir string) error {
	return withRoleLock(dir, func() error {
		r, err := readRole(dir)
		if err != nil {
			return err
		}
		r.Role = RoleStandby
		return writeRole(dir, r)
	})
}

// Listen opens the server and its listening socket under the role lock.
//
// This closes the race between a demote hook and a server restarting at the
// same time. The hook (DemoteOnDisk, then POST /role) takes the lock to
// write the file. A server takes it before reading the file and releases
// it only once its socket listens. So either the hook wrote first (the
// server reads "standby"), or the server listens before the hook writes,
// and the hook's POST, queued in the socket's backlog if need be, reaches
// it. A hook whose POST finds nothing listening ("connection refused")
// knows the server is down and will start as a standby.
func Listen(cfg Config, addr string) (*Server, net.Listener, error) {
	unlock, err := lockRole(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	s, err := openLocked(cfg)
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		_ = s.Close()
		return nil, nil, err
	}
	return s, l, nil
}
