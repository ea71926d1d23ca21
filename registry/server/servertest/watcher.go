package servertest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// Watcher records every message of one Watch stream for a test to wait on.
type Watcher struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	msgs   []*pb.WatchResponse
	at     []time.Time // arrival time of each message
	err    error
	notify chan struct{}
}

// Received is one view with the time it arrived.
type Received struct {
	View *pb.View
	At   time.Time
}

// Watch opens a Watch stream on cli and records it until the test ends.
func Watch(t testing.TB, cli pb.RegistryServiceClient, req *pb.WatchRequest) *Watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := cli.Watch(ctx, req)
	if err != nil {
		cancel()
		t.Fatalf("watch: %v", err)
	}
	w := &Watcher{t: t, cancel: cancel, done: make(chan struct{}), notify: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			m, err := stream.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
			} else {
				w.msgs = append(w.msgs, m)
				w.at = append(w.at, time.Now())
			}
			close(w.notify)
			w.notify = make(chan struct{})
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(w.Close)
	return w
}

// Close ends the stream and waits for the reader.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

// Messages returns what arrived so far.
func (w *Watcher) Messages() []*pb.WatchResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*pb.WatchResponse(nil), w.msgs...)
}

// Err is the error that ended the stream, if any.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// WaitErr waits for the stream to end and returns its error.
func (w *Watcher) WaitErr(timeout time.Duration) error {
	select {
	case <-w.done:
		return w.Err()
	case <-time.After(timeout):
		w.t.Fatalf("watch stream did not end within %v", timeout)
		return nil
	}
}

// WaitView waits until the latest view of service satisfies ok, checking
// after every message, and returns that view and when it arrived. It fails
// the test after timeout, printing the last view seen.
func (w *Watcher) WaitView(service string, timeout time.Duration, what string, ok func(*pb.View) bool) Received {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		latest, at, found := w.latestLocked(service)
		err, notify := w.err, w.notify
		w.mu.Unlock()
		if found && ok(latest) {
			return Received{View: latest, At: at}
		}
		if err != nil {
			w.t.Fatalf("waiting for %s: stream ended: %v", what, err)
		}
		select {
		case <-notify:
		case <-deadline:
			w.t.Fatalf("waiting for %s: not seen within %v; last view of %s: %s", what, timeout, service, Describe(latest))
		}
	}
}

func (w *Watcher) latestLocked(service string) (*pb.View, time.Time, bool) {
	for i := len(w.msgs) - 1; i >= 0; i-- {
		m := w.msgs[i]
		for _, v := range m.GetViews() {
			if v.GetService() == service {
				return v, w.at[i], true
			}
		}
		if m.GetSnapshot() {
			return &pb.View{Service: service}, w.at[i], true // absent from a snapshot: no instances
		}
	}
	return nil, time.Time{}, false
}

// Describe renders a view on one line for test failures.
func Describe(v *pb.View) string {
	if v == nil {
		return "<none>"
	}
	var parts []string
	for _, in := range v.GetInstances() {
		parts = append(parts, fmt.Sprintf("%s=%s", in.GetHost(), strings.TrimPrefix(in.GetHealth().String(), "HEALTH_")))
	}
	return fmt.Sprintf("%s rev=%d status=%s stale=%v [%s]", v.GetService(), v.GetRevision(),
		strings.TrimPrefix(v.GetStatus().String(), "STATUS_"), v.GetStale(), strings.Join(parts, " "))
}

// Instance returns the instance of v on host, or nil.
func Instance(v *pb.View, host string) *pb.Instance {
	for _, in := range v.GetInstances() {
		if in.GetHost() == host {
			return in
		}
	}
	return nil
}
