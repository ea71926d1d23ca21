package agent

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// agentState is what an agent keeps on disk between runs.
type agentState struct {
	LeaseID int64 `json:"lease_id,omitempty"`
	// Terms are the epochs of the primary roles this host held or was
	// promoting, by service: a term is recorded before its promote hook
	// starts and removed once its demote hook succeeded. A restarted agent
	// that finds a term here demotes the service unless that very term is
	// still its own.
	Terms map[string]int64 `json:"terms,omitempty"`
}

// loadState reads the state file; a missing or unreadable one is empty.
func loadState(path string) agentState {
	var st agentState
	if path == "" {
		return st
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// resume returns the lease an earlier run left alive, or nil.
func (a *Agent) resume(ctx context.Context) *Lease {
	st := a.state()
	if st.LeaseID == 0 {
		return nil
	}
	// Only etcd saying the lease is gone is final. When the whole cluster
	// restarts with the agents (a power cut), etcd refreshes every lease
	// once it has a leader again, so keep asking until it answers.
	giveUp := time.Now().Add(max(resumeFor, 3*a.cfg.TTL.Duration))
	pause := 250 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, a.opts.WriteTimeout)
		l, err := resumeLease(rctx, a.cli, clientv3.LeaseID(st.LeaseID), a.cfg.TTL.Duration)
		cancel()
		if err == nil {
			a.log.Info("agent: resumed the lease of the previous run", "lease", st.LeaseID, "deadline", time.Until(l.Deadline()))
			return l
		}
		gone := errors.Is(err, rpctypes.ErrLeaseNotFound) || rpctypes.Error(err) == rpctypes.ErrLeaseNotFound
		if gone || ctx.Err() != nil || time.Now().After(giveUp) {
			a.log.Info("agent: previous lease is gone; starting afresh", "lease", st.LeaseID, "err", err)
			return nil
		}
		a.log.Info("agent: cannot reach etcd to resume the previous lease; retrying", "lease", st.LeaseID, "err", err, "in", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// resumeFor bounds how long a starting agent keeps trying to reach etcd
// to resume its previous lease before it starts afresh.
const resumeFor = 30 * time.Second

// state returns a copy of what the state file holds.
func (a *Agent) state() agentState {
	a.stMu.Lock()
	defer a.stMu.Unlock()
	st := a.st
	st.Terms = maps.Clone(st.Terms)
	return st
}

// saveLease records the lease so a restart within the TTL can resume it;
// nil forgets it (a graceful stop).
func (a *Agent) saveLease(l *Lease) {
	a.stMu.Lock()
	defer a.stMu.Unlock()
	a.st.LeaseID = 0
	if l != nil {
		a.st.LeaseID = int64(l.LeaseID())
	}
	a.writeState()
}

// saveTerm records the term a service's elector is promoting or acting in
// (0: none). Electors call it before a promote hook and after a demote.
func (a *Agent) saveTerm(service string, epoch int64) {
	a.stMu.Lock()
	defer a.stMu.Unlock()
	if epoch == 0 {
		delete(a.st.Terms, service)
	} else {
		if a.st.Terms == nil {
			a.st.Terms = map[string]int64{}
		}
		a.st.Terms[service] = epoch
	}
	a.writeState()
}

// writeState writes the state file atomically (a crash mid-write never
// leaves a torn file) and synced (a term must survive a power cut), or
// removes it when there is nothing to keep. Callers hold stMu.
func (a *Agent) writeState() {
	path := a.cfg.StateFile
	if path == "" {
		return
	}
	if a.st.LeaseID == 0 && len(a.st.Terms) == 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			a.log.Warn("agent: cannot remove state_file", "path", path, "err", err)
		}
		return
	}
	b, _ := json.Marshal(a.st)
	if err := writeFileSynced(path, b); err != nil {
		a.log.Warn("agent: cannot write state_file; a restart will not know this run's lease and terms", "path", path, "err", err)
	}
}

func writeFileSynced(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
