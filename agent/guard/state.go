package guard

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reasons put in UNDERSTUDY_REASON of the demote hooks the guard runs.
const (
	reasonFence    = "the agent stopped renewing its lease; demoted by the guard"
	reasonShutdown = "the guard was stopped while the service was armed; demoted by the guard"
)

// table holds every service's fence state. It decides, the server acts: its
// methods take the time as an argument and do no I/O, so that every rule of
// the package doc is a table test in microseconds. Not safe for concurrent
// use; the server holds a lock around it.
type table struct {
	m map[string]*entry
}

type entry struct {
	service string
	epoch   int64 // the last epoch armed
	armed   bool
	fence   time.Time // monotonic
	retryAt time.Time // after a failed attempt; zero before
	demote  []string
	env     []string
	timeout time.Duration

	running  bool // a demote hook is running
	attempts int
	lastErr  string

	fired      bool
	firedEpoch int64
	firedAt    time.Time
}

// job is one run of a demote hook to do.
type job struct {
	service string
	epoch   int64
	demote  []string
	env     []string
	timeout time.Duration
	reason  string
}

func newTable() *table { return &table{m: map[string]*entry{}} }

// arm applies an arm request received at now.
func (t *table) arm(a Arm, now time.Time) error {
	switch {
	case a.Service == "":
		return fmt.Errorf("%w: arm without a service", ErrBadRequest)
	case a.Epoch <= 0:
		return fmt.Errorf("%w: arm of %s with epoch %d: epochs start at 1", ErrBadRequest, a.Service, a.Epoch)
	case len(a.Demote) == 0 || a.Demote[0] == "":
		return fmt.Errorf("%w: arm of %s without a demote command", ErrBadRequest, a.Service)
	case a.Timeout < 0:
		return fmt.Errorf("%w: arm of %s with a negative timeout", ErrBadRequest, a.Service)
	}
	e := t.m[a.Service]
	if e == nil {
		e = &entry{service: a.Service}
		t.m[a.Service] = e
	}
	switch {
	case a.Epoch < e.epoch:
		return fmt.Errorf("%w: %s epoch %d is lower than %d", ErrStaleEpoch, a.Service, a.Epoch, e.epoch)
	case e.running:
		return fmt.Errorf("%w: %s: the demote hook of epoch %d is running", ErrDemoting, a.Service, e.epoch)
	case a.Epoch == e.epoch && e.fired && e.firedEpoch == a.Epoch:
		return fmt.Errorf("%w: %s epoch %d was demoted at %s", ErrDemoted, a.Service, a.Epoch, e.firedAt.Format(time.RFC3339))
	case a.Epoch == e.epoch && e.armed && !now.Before(e.fence):
		return fmt.Errorf("%w: %s: the fence point of epoch %d passed %v ago", ErrDemoting, a.Service, a.Epoch, now.Sub(e.fence).Round(time.Millisecond))
	}
	if a.Epoch > e.epoch || !e.armed {
		e.attempts, e.lastErr, e.retryAt = 0, "", time.Time{}
	}
	e.epoch, e.armed = a.Epoch, true
	e.fence = now.Add(max(a.FenceIn, 0))
	e.demote, e.env = slices.Clone(a.Demote), slices.Clone(a.Env)
	e.timeout = a.Timeout
	if e.timeout == 0 {
		e.timeout = DefaultDemoteTimeout
	}
	return nil
}

// disarm: the agent demoted service itself at epoch or later.
func (t *table) disarm(service string, epoch int64) {
	if e := t.m[service]; e != nil && e.armed && epoch >= e.epoch {
		e.armed = false
	}
}

// due returns the demotes to start at now and marks them running.
func (t *table) due(now time.Time) []job {
	var jobs []job
	for _, e := range t.m {
		if e.armed && !e.running && !now.Before(e.fence) && !now.Before(e.retryAt) {
			jobs = append(jobs, t.start(e, reasonFence))
		}
	}
	return jobs
}

// stopping returns a demote for every armed service not demoting already:
// the guard is about to exit, and nothing would fence them afterwards.
func (t *table) stopping() []job {
	var jobs []job
	for _, e := range t.m {
		if e.armed && !e.running {
			jobs = append(jobs, t.start(e, reasonShutdown))
		}
	}
	return jobs
}

func (t *table) start(e *entry, reason string) job {
	e.running = true
	e.attempts++
	return job{service: e.service, epoch: e.epoch, demote: e.demote, env: e.env, timeout: e.timeout, reason: reason}
}

// finish records the outcome of j at now. A failure is retried after
// RetryInterval, as long as the service is still armed at j's epoch.
func (t *table) finish(j job, err error, now time.Time) {
	e := t.m[j.service]
	e.running = false
	if err != nil {
		e.lastErr = err.Error()
		e.retryAt = now.Add(RetryInterval)
		return
	}
	e.lastErr = ""
	e.fired, e.firedEpoch, e.firedAt = true, j.epoch, now
	if e.epoch == j.epoch {
		e.armed = false
	}
}

// next is when due may return something next; ok is false when nothing is
// armed and waiting.
func (t *table) next() (at time.Time, ok bool) {
	for _, e := range t.m {
		if !e.armed || e.running {
			continue
		}
		w := e.fence
		if e.retryAt.After(w) {
			w = e.retryAt
		}
		if !ok || w.Before(at) {
			at, ok = w, true
		}
	}
	return at, ok
}

// armed says whether any service is armed.
func (t *table) armed() bool {
	for _, e := range t.m {
		if e.armed {
			return true
		}
	}
	return false
}

// overdue says whether a fence point has passed without a successful
// demote: the watchdog must not be petted any more.
func (t *table) overdue(now time.Time) bool {
	for _, e := range t.m {
		if e.armed && !now.Before(e.fence) {
			return true
		}
	}
	return false
}

// status lists every service the guard has heard of, by name.
func (t *table) status(now time.Time) []ServiceStatus {
	out := make([]ServiceStatus, 0, len(t.m))
	for _, e := range t.m {
		s := ServiceStatus{
			Service: e.service, Epoch: e.epoch, Armed: e.armed, Demoting: e.running, Attempts: e.attempts,
			Fired: e.fired, FiredEpoch: e.firedEpoch, FiredAt: e.firedAt, DemoteError: e.lastErr,
		}
		if e.armed {
			s.FenceIn = e.fence.Sub(now)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ServiceStatus) int { return strings.Compare(a.Service, b.Service) })
	return out
}
