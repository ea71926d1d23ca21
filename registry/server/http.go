package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true, Multiline: true, EmitDefaultValues: true}

// httpHandler serves health, readiness, metrics and views as JSON.
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
		select {
		case <-s.hub.Ready():
		default:
			http.Error(w, ErrNotReady.Error(), http.StatusServiceUnavailable)
			return
		}
		views, rev := s.hub.Views()
		writeJSON(w, &pb.ListServicesResponse{Views: views, Revision: rev})
	})
	return mux
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
