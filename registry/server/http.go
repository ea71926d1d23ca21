package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

var (
	jsonOpts = protojson.MarshalOptions{UseProtoNames: true, Multiline: true, EmitDefaultValues: true}
	// eventOpts writes the data line of a server-sent event: protojson
	// never breaks a line unless asked to.
	eventOpts = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}
)

const (
	// sseKeepalive is how often an idle event stream gets a comment line,
	// so that proxies and load balancers do not close it for inactivity.
	sseKeepalive = 15 * time.Second
	// sseWriteTimeout bounds each write to an event stream: a client that
	// stops reading is dropped instead of holding the handler forever.
	sseWriteTimeout = 30 * time.Second
)

// httpHandler serves health, readiness, metrics, views as JSON and view
// changes as server-sent events.
func (s *Server) httpHandler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	// Ready means the views are loaded and current (etcd has a quorum).
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.hub.Ready():
		default:
			http.Error(w, "not ready: views not loaded from etcd yet", http.StatusServiceUnavailable)
			return
		}
		if s.hub.Stale() {
			http.Error(w, "not ready: etcd has no quorum, serving stale views", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready(w) {
			return
		}
		views, rev := s.hub.Views()
		writeJSON(w, &pb.ListServicesResponse{Views: views, Revision: rev})
	})
	mux.HandleFunc("GET /v1/services/{service}", s.getService)
	mux.HandleFunc("GET /v1/watch", func(w http.ResponseWriter, r *http.Request) {
		s.watchEvents(w, r, sseKeepalive)
	})
	return mux
}

// ready answers 503 and returns false while the hub has not read the
// keyspace yet. Requests do not wait for it: a client retries (Retry-After).
func (s *Server) ready(w http.ResponseWriter) bool {
	select {
	case <-s.hub.Ready():
		return true
	default:
		httpError(w, ErrNotReady)
		return false
	}
}

// getService serves GET /v1/services/SERVICE: the service's view alone, the
// same JSON as one element of /v1/services.
func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("service")
	if err := registry.ValidateName("service", name); err != nil {
		httpError(w, err)
		return
	}
	if !s.ready(w) {
		return
	}
	v := s.hub.View(name)
	if v == nil {
		httpError(w, fmt.Errorf("%w %q: no instance is registered", ErrUnknownService, name))
		return
	}
	writeJSON(w, v)
}

// watchEvents serves GET /v1/watch?service=a&service=b as server-sent
// events, the HTTP form of the Watch RPC for programs without gRPC (curl,
// shell scripts, a browser's EventSource). No service parameter watches
// every service, including ones that appear later.
//
// The first event is the snapshot, the whole state of the watched services
// (a WatchResponse; a watched service missing from it has no instances):
//
//	event: snapshot
//	id: 41
//	data: {"revision":"41","snapshot":true,"views":[...]}
//
// then one event per changed view, its data the view itself (one with no
// instances means the service is gone):
//
//	event: view
//	id: 42
//	data: {"service":"postgres","mode":"MODE_PRIMARY",...}
//
// Every id is a revision the client may resume from: a reconnecting
// EventSource sends it back as Last-Event-ID (or a client passes
// ?from_revision=N; the header wins), and the stream then starts with the
// views changed since, as view events, or with a fresh snapshot when the
// server no longer knows what changed. While nothing changes, a comment line
// (": keepalive") every keepalive keeps proxies from closing the stream. It
// ends when the client goes away or the server stops.
func (s *Server) watchEvents(w http.ResponseWriter, r *http.Request, keepalive time.Duration) {
	services, fromRev, err := watchParams(r)
	if err != nil {
		httpError(w, err)
		return
	}
	if !s.ready(w) {
		return
	}
	sub, first, err := s.hub.Subscribe(r.Context(), services, fromRev)
	if err != nil {
		httpError(w, err)
		return
	}
	defer sub.Close()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(events []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(events); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	var out []byte
	if first.GetSnapshot() {
		out = appendEvent(out, "snapshot", first.GetRevision(), first)
	} else {
		// A resume: the views changed since fromRev, each with the revision
		// a client may resume from after it.
		for _, m := range messages(first.GetViews(), first.GetRevision()) {
			out = appendEvent(out, "view", m.GetRevision(), m.GetViews()[0])
		}
	}
	if len(out) == 0 {
		out = []byte(": resumed, nothing changed\n\n")
	}
	if !send(out) {
		return
	}
	metricWatchMessages.Inc()

	// Next runs on its own goroutine so that keepalives can be written
	// while it waits; both end before the handler returns.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	batches := make(chan []*pb.WatchResponse)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(batches)
		for {
			msgs, err := sub.Next(ctx)
			if err != nil {
				return // client gone, or subscription closed by the hub stopping
			}
			select {
			case batches <- msgs:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		select {
		case msgs, ok := <-batches:
			if !ok {
				return
			}
			out = out[:0]
			for _, m := range msgs {
				out = appendEvent(out, "view", m.GetRevision(), m.GetViews()[0])
			}
			if !send(out) {
				return
			}
			metricWatchMessages.Add(float64(len(msgs)))
			tick.Reset(keepalive)
		case <-tick.C:
			if !send([]byte(": keepalive\n\n")) {
				return
			}
		}
	}
}

// watchParams reads the services and the resume revision of a watch request.
func watchParams(r *http.Request) (services []string, fromRev int64, err error) {
	q := r.URL.Query()
	services = q["service"]
	for i, name := range services {
		if err := registry.ValidateName(fmt.Sprintf("service[%d]", i), name); err != nil {
			return nil, 0, err
		}
	}
	field, value := "from_revision", q.Get("from_revision")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		field, value = "Last-Event-ID", id
	}
	if value == "" {
		return services, 0, nil
	}
	fromRev, err = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil || fromRev < 0 {
		return nil, 0, fmt.Errorf("%w: %s %q is not a revision (a number ≥ 0)", ErrInvalidArgument, field, value)
	}
	return services, fromRev, nil
}

// appendEvent appends one server-sent event to b.
func appendEvent(b []byte, event string, id int64, m proto.Message) []byte {
	data, err := eventOpts.Marshal(m)
	if err != nil {
		// Only an invalid message fails to marshal; say so on the stream
		// rather than breaking it.
		data = []byte(strconv.Quote(err.Error()))
		event = "error"
	}
	b = fmt.Appendf(b, "event: %s\nid: %d\ndata: ", event, id)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// httpCode maps errors to HTTP status codes in one place, as toStatus does
// for gRPC.
func httpCode(err error) int {
	switch {
	case errors.Is(err, registry.ErrInvalidName), errors.Is(err, ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, ErrRefused):
		return http.StatusConflict
	case errors.Is(err, ErrUnknownService):
		return http.StatusNotFound
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrStopped), errors.Is(err, ErrSubscriptionClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func httpError(w http.ResponseWriter, err error) {
	code := httpCode(err)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, err.Error(), code)
}

func writeJSON(w http.ResponseWriter, m proto.Message) {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
