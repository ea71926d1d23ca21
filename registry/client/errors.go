package client

import "errors"

var (
	// ErrNoServer means no registry server has sent the client its views
	// yet. WaitReady wraps it with the addresses tried and the last error.
	ErrNoServer = errors.New("no registry server answered")
	// ErrClosed means the client was closed (or its context ended).
	ErrClosed = errors.New("registry client closed")
	// errSilent ends a session whose server stopped answering.
	errSilent = errors.New("registry server stopped answering")
	// errStaleServer ends a session whose server has reported for a while
	// that it serves stale views, so that another server may serve current
	// ones.
	errStaleServer = errors.New("registry server has no etcd quorum (serving stale views)")
)
