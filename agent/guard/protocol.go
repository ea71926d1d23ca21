package guard

import (
	"errors"
	"time"
)

// Errors of Serve and of a Client. A Client's errors for requests the guard
// refused wrap the sentinel with the guard's own message.
var (
	// ErrRunning: another guard already answers on the socket.
	ErrRunning = errors.New("a guard already answers on this socket")
	// ErrStaleEpoch: the epoch is lower than one the guard was armed with.
	ErrStaleEpoch = errors.New("stale epoch")
	// ErrDemoted: the guard demoted the service at this epoch already; the
	// term is over on this host.
	ErrDemoted = errors.New("the guard demoted the service at this epoch")
	// ErrDemoting: the fence point of this epoch passed and the guard is
	// demoting the service, or a demote hook is running; try again once it
	// has finished.
	ErrDemoting = errors.New("the guard is demoting the service")
	// ErrBadRequest: the guard could not make sense of a request.
	ErrBadRequest = errors.New("bad request")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("guard client closed")
)

const (
	// DefaultDemoteTimeout bounds a demote hook armed with no timeout.
	DefaultDemoteTimeout = 30 * time.Second
	// RetryInterval is the pause between two attempts of a failing demote.
	RetryInterval = time.Second
	// DefaultWatchdogTimeout is the watchdog's timeout when Config leaves it 0.
	DefaultWatchdogTimeout = 10 * time.Second
	// WatchdogInterval is how often the guard pets the watchdog.
	WatchdogInterval = 500 * time.Millisecond
	// maxLine bounds one request or response line.
	maxLine = 1 << 20
)

// Arm is what the agent tells the guard after every lease renewal.
type Arm struct {
	Service string
	Epoch   int64
	// FenceIn is how long from the moment Client.Arm is called this host may
	// still act as primary. 0 or less: demote now.
	FenceIn time.Duration
	// Demote is the demote hook's argv, run without a shell.
	Demote []string
	// Env is added to the hook's environment ("K=V").
	Env []string
	// Timeout bounds one run of the hook; 0 means DefaultDemoteTimeout.
	Timeout time.Duration
}

// ServiceStatus is what the guard knows of one service.
type ServiceStatus struct {
	Service string
	// Epoch is the last epoch armed.
	Epoch int64
	Armed bool
	// FenceIn is what is left until the fence point when armed; negative once
	// it passed.
	FenceIn time.Duration
	// Demoting: a demote hook is running.
	Demoting bool
	// Attempts counts the demote hook's runs for the armed epoch.
	Attempts int
	// Fired: the guard's demote succeeded, at FiredAt for FiredEpoch.
	Fired       bool
	FiredEpoch  int64
	FiredAt     time.Time
	DemoteError string
}

// The wire format: one JSON object per line.
const (
	opArm    = "arm"
	opDisarm = "disarm"
	opStatus = "status"
)

type request struct {
	Op        string `json:"op"`
	Service   string `json:"service,omitempty"`
	Epoch     int64  `json:"epoch,omitempty"`
	FenceInMS int64  `json:"fence_in_ms,omitempty"`
	// FenceAtMonoNS, when set, is the fence point on the host's
	// CLOCK_MONOTONIC; it takes precedence over fence_in_ms.
	FenceAtMonoNS int64    `json:"fence_at_mono_ns,omitempty"`
	Demote        []string `json:"demote,omitempty"`
	Env           []string `json:"env,omitempty"`
	TimeoutMS     int64    `json:"timeout_ms,omitempty"`
}

type response struct {
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Code     string        `json:"code,omitempty"`
	Services []serviceJSON `json:"services,omitempty"`
}

type serviceJSON struct {
	Service     string `json:"service"`
	Epoch       int64  `json:"epoch"`
	Armed       bool   `json:"armed"`
	FenceInMS   int64  `json:"fence_in_ms,omitempty"`
	Demoting    bool   `json:"demoting,omitempty"`
	Attempts    int    `json:"attempts,omitempty"`
	Fired       bool   `json:"fired"`
	FiredEpoch  int64  `json:"fired_epoch,omitempty"`
	FiredAt     string `json:"fired_at,omitempty"`
	DemoteError string `json:"demote_error,omitempty"`
}

// codes maps the wire's error codes to the sentinel errors, both ways.
var codes = map[string]error{
	"stale_epoch": ErrStaleEpoch,
	"demoted":     ErrDemoted,
	"demoting":    ErrDemoting,
	"bad_request": ErrBadRequest,
}

func codeOf(err error) string {
	for c, e := range codes {
		if errors.Is(err, e) {
			return c
		}
	}
	return ""
}

func toJSON(s ServiceStatus) serviceJSON {
	j := serviceJSON{
		Service: s.Service, Epoch: s.Epoch, Armed: s.Armed, FenceInMS: s.FenceIn.Milliseconds(),
		Demoting: s.Demoting, Attempts: s.Attempts, Fired: s.Fired, FiredEpoch: s.FiredEpoch,
		DemoteError: s.DemoteError,
	}
	if s.Fired {
		j.FiredAt = s.FiredAt.UTC().Format(time.RFC3339Nano)
	}
	return j
}

func fromJSON(j serviceJSON) ServiceStatus {
	s := ServiceStatus{
		Service: j.Service, Epoch: j.Epoch, Armed: j.Armed, FenceIn: time.Duration(j.FenceInMS) * time.Millisecond,
		Demoting: j.Demoting, Attempts: j.Attempts, Fired: j.Fired, FiredEpoch: j.FiredEpoch,
		DemoteError: j.DemoteError,
	}
	s.FiredAt, _ = time.Parse(time.RFC3339Nano, j.FiredAt)
	return s
}
