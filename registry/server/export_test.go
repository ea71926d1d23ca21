package server

import (
	"net/http"
	"time"
)

// WatchEventsHandler is GET /v1/watch of s with another keepalive interval,
// for tests that cannot wait 15 s for one.
func (s *Server) WatchEventsHandler(keepalive time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.watchEvents(w, r, keepalive) })
}
