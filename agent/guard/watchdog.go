package guard

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// watchdog is the kernel's or the hardware's watchdog device: once opened,
// the host is reset unless something writes to it within its timeout, or
// writes the magic "V" before closing it. Not safe for concurrent use.
type watchdog struct {
	path    string
	timeout time.Duration
	log     *slog.Logger
	f       *os.File
}

// open opens the device and sets its timeout, unless it is open already.
// A device (or a test's regular file) that knows no WDIOC_SETTIMEOUT keeps
// its own timeout.
func (w *watchdog) open() error {
	if w.f != nil {
		return nil
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	secs := int((w.timeout + time.Second - 1) / time.Second)
	if err := setWatchdogTimeout(f, secs); err != nil && !errors.Is(err, errNotWatchdog) {
		// Opened, the device is running: close it properly before giving up.
		_, _ = f.Write([]byte("V"))
		_ = f.Close()
		return fmt.Errorf("watchdog: setting %s's timeout to %ds: %w", w.path, secs, err)
	}
	w.f = f
	w.log.Info("guard: watchdog opened", "device", w.path, "timeout", time.Duration(secs)*time.Second)
	return nil
}

// pet tells the device that the host is fine for another timeout.
func (w *watchdog) pet() error {
	if w.f == nil {
		return nil
	}
	if _, err := w.f.Write([]byte("1")); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	return nil
}

// close stops the device with the magic "V" (magic) or leaves it running so
// that it resets the host (!magic: a demote failed and nothing else fences
// the service).
func (w *watchdog) close(magic bool) error {
	if w.f == nil {
		return nil
	}
	var err error
	if magic {
		_, err = w.f.Write([]byte("V"))
	}
	err = errors.Join(err, w.f.Close())
	w.f = nil
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	if magic {
		w.log.Info("guard: watchdog closed", "device", w.path)
	} else {
		w.log.Error("guard: watchdog left running: the host will be reset", "device", w.path, "timeout", w.timeout)
	}
	return nil
}
