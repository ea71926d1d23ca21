package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// agentState is what an agent keeps on disk between runs.
type agentState struct {
	LeaseID int64 `json:"lease_id"`
}

// resume returns the lease an earlier run left alive, or nil.
func (a *Agent) resume(ctx context.Context) *Lease {
	if a.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(a.cfg.StateFile)
	if err != nil {
		return nil
	}
	var st agentState
	if json.Unmarshal(b, &st) != nil || st.LeaseID == 0 {
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

// saveLease records the lease so a restart within the TTL can resume it.
// It is written atomically: a crash mid-write never leaves a torn file.
func (a *Agent) saveLease(l *Lease) {
	if a.cfg.StateFile == "" {
		return
	}
	b, _ := json.Marshal(agentState{LeaseID: int64(l.LeaseID())})
	tmp := a.cfg.StateFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(a.cfg.StateFile), 0o755); err == nil {
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, a.cfg.StateFile)
		}
		if err == nil {
			return
		}
	}
	a.log.Warn("agent: cannot write state_file; a restart will not resume the lease", "path", a.cfg.StateFile)
}

// forgetLease removes the state file after a graceful stop.
func (a *Agent) forgetLease() {
	if a.cfg.StateFile == "" {
		return
	}
	if err := os.Remove(a.cfg.StateFile); err != nil && !os.IsNotExist(err) {
		a.log.Warn("agent: cannot remove state_file", "path", a.cfg.StateFile, "err", err)
	}
}
