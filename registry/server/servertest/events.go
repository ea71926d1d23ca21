package servertest

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// Event is one server-sent event of GET /v1/watch.
type Event struct {
	Type string // "snapshot" or "view"
	ID   string
	Data string
	At   time.Time
	// Views holds the views the event carries: every view of a snapshot,
	// the one view of a view event.
	Views []*pb.View
}

// EventStream reads the server-sent events of one GET request with a plain
// net/http client, recording every event and comment for a test to wait on.
type EventStream struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	events   []Event
	comments []string
	err      error // why the stream ended: io.EOF when the server closed it
	notify   chan struct{}
}

// GetEvents opens url (with header, which may be nil) and reads its event
// stream until the test ends. It fails the test unless the answer is 200
// with Content-Type text/event-stream.
func GetEvents(t testing.TB, url string, header http.Header) *EventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	// No idle keep-alive connection outlives the test.
	req.Close = true
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // the reader goroutine closes it
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: %d %s %q, want 200 text/event-stream", url, resp.StatusCode, ct, body)
	}
	s := &EventStream{t: t, cancel: cancel, done: make(chan struct{}), notify: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		s.read(resp.Body)
	}()
	t.Cleanup(s.Close)
	return s
}

// read parses the stream: "field: value" lines, ": comment" lines, and a
// blank line ending each event.
func (s *EventStream) read(body io.Reader) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	var ev Event
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Type == "" && data == nil {
				continue
			}
			ev.Data = strings.Join(data, "\n")
			ev.At = time.Now()
			ev.Views = parseViews(ev.Type, ev.Data)
			s.add(func() { s.events = append(s.events, ev) })
			ev, data = Event{}, nil
		case strings.HasPrefix(line, ":"):
			s.add(func() { s.comments = append(s.comments, strings.TrimSpace(line[1:])) })
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.Type = value
			case "id":
				ev.ID = value
			case "data":
				data = append(data, value)
			}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	s.add(func() { s.err = err })
}

func parseViews(typ, data string) []*pb.View {
	switch typ {
	case "snapshot":
		var m pb.WatchResponse
		if protojson.Unmarshal([]byte(data), &m) == nil {
			return m.GetViews()
		}
	case "view":
		var v pb.View
		if protojson.Unmarshal([]byte(data), &v) == nil {
			return []*pb.View{&v}
		}
	}
	return nil
}

func (s *EventStream) add(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
	close(s.notify)
	s.notify = make(chan struct{})
}

// Close ends the request and waits for the reader.
func (s *EventStream) Close() {
	s.cancel()
	<-s.done
}

// Events returns the events that arrived so far.
func (s *EventStream) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Comments returns the comment lines that arrived so far, without the colon.
func (s *EventStream) Comments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...)
}

// Err is why the stream ended (io.EOF: the server closed it), nil while open.
func (s *EventStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// WaitEnd waits for the server to end the stream and returns why.
func (s *EventStream) WaitEnd(timeout time.Duration) error {
	s.t.Helper()
	select {
	case <-s.done:
		return s.Err()
	case <-time.After(timeout):
		s.t.Fatalf("event stream did not end within %v", timeout)
		return nil
	}
}

// Wait waits until ok holds for what has arrived, checking after every
// event or comment, and fails the test after timeout.
func (s *EventStream) Wait(timeout time.Duration, what string, ok func(events []Event, comments []string) bool) {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		done := ok(s.events, s.comments)
		err, notify := s.err, s.notify
		n := len(s.events)
		s.mu.Unlock()
		if done {
			return
		}
		if err != nil {
			s.t.Fatalf("waiting for %s: stream ended after %d events: %v", what, n, err)
		}
		select {
		case <-notify:
		case <-deadline:
			s.t.Fatalf("waiting for %s: not seen within %v (%d events)", what, timeout, n)
		}
	}
}

// WaitView waits until the latest view of service satisfies ok and returns
// it with its event, like Watcher.WaitView.
func (s *EventStream) WaitView(service string, timeout time.Duration, what string, ok func(*pb.View) bool) (*pb.View, Event) {
	s.t.Helper()
	var (
		view *pb.View
		ev   Event
	)
	s.Wait(timeout, what, func(events []Event, _ []string) bool {
		view, ev = LatestView(events, service)
		return view != nil && ok(view)
	})
	return view, ev
}

// LatestView returns the latest view of service in events and the event
// that carried it; a service missing from the latest snapshot has no
// instances. Nil when no event has spoken of it yet.
func LatestView(events []Event, service string) (*pb.View, Event) {
	for i := len(events) - 1; i >= 0; i-- {
		for _, v := range events[i].Views {
			if v.GetService() == service {
				return v, events[i]
			}
		}
		if events[i].Type == "snapshot" {
			return &pb.View{Service: service}, events[i]
		}
	}
	return nil, Event{}
}
