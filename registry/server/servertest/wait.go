package servertest

import (
	"testing"
	"time"
)

// pollInterval is how often WaitFor and WaitUntil look again.
const pollInterval = 5 * time.Millisecond

// WaitFor polls check until it returns nil, failing the test with what and
// the last error once timeout has passed. Tests use it instead of sleeps.
func WaitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// WaitUntil polls cond until it holds, failing the test with what once
// timeout has passed.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v", what, timeout)
		}
		time.Sleep(pollInterval)
	}
}
