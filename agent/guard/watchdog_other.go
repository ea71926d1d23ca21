//go:build !linux

package guard

import (
	"errors"
	"os"
)

// errNotWatchdog: no watchdog ioctls on this system; the device keeps its
// own timeout.
var errNotWatchdog = errors.New("watchdog ioctls are Linux only")

func setWatchdogTimeout(*os.File, int) error { return errNotWatchdog }
