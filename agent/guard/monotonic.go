package guard

import (
	"time"

	"golang.org/x/sys/unix"
)

// monoNow reads CLOCK_MONOTONIC: one clock for every process of the host,
// unmoved by wall-clock steps. An arm request carries its fence point on it,
// so that however long the request takes to reach the guard (the agent
// frozen right after writing it, a guard busy elsewhere), the fence point
// is the instant the agent meant, never later. Go's own monotonic readings
// are relative to each process's start and cannot cross a socket.
func monoNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return -1
	}
	return time.Duration(ts.Nano())
}
