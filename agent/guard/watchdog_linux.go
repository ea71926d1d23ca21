package guard

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// errNotWatchdog: the file takes no watchdog ioctls (a test's regular file).
var errNotWatchdog = unix.ENOTTY

func setWatchdogTimeout(f *os.File, secs int) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := conn.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetPointerInt(int(fd), unix.WDIOC_SETTIMEOUT, secs)
	}); err != nil {
		return err
	}
	if errors.Is(ioErr, unix.ENOTTY) {
		return errNotWatchdog
	}
	return ioErr
}
