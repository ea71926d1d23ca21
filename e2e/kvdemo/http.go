package kvdemo

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Handler serves the HTTP API:
//
//	POST /role   RoleRequest        from the promote and demote hooks
//	POST /write  WriteRequest       200 Write (the host and epoch logged);
//	                                409 stale epoch; 503 not primary
//	GET  /get?key=K                 the value, 404 if absent
//	GET  /state                     State
//	GET  /log                       the write log, one JSON Write a line
//	GET  /health                    200 while the process serves
//	POST /slow?for=D                /health answers a second late for the
//	                                duration D (Go syntax; 0 ends it)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /role", func(w http.ResponseWriter, r *http.Request) {
		var req RoleRequest
		if !decode(w, r, &req) {
			return
		}
		if err := s.SetRole(req); err != nil {
			code := http.StatusBadRequest
			if errors.Is(err, ErrStaleEpoch) {
				code = http.StatusConflict
			}
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, s.State())
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		var req WriteRequest
		if !decode(w, r, &req) {
			return
		}
		rec, err := s.Write(req)
		switch {
		case err == nil:
			writeJSON(w, rec)
		case errors.Is(err, ErrStaleEpoch):
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		v, ok := s.Get(r.URL.Query().Get("key"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, v)
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.State()) })
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock() // no write half-appended while we read
		defer s.mu.Unlock()
		f, err := os.Open(s.Path())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer func() { _ = f.Close() }()
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.Copy(w, f)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if d := s.healthDelay(); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("for"))
		if err != nil {
			http.Error(w, "for: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.SlowHealth(d)
		_, _ = fmt.Fprintf(w, "health slow for %v\n", d)
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "bad request body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ReadLog reads a write log file.
func ReadLog(path string) ([]Write, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return ParseLog(f)
}

// ParseLog reads write log lines. A torn last line (the process died while
// appending) is dropped: its write was never acknowledged.
func ParseLog(r io.Reader) ([]Write, error) {
	var out []Write
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var torn error
	for n := 1; sc.Scan(); n++ {
		if torn != nil {
			return nil, torn // a bad line followed by more lines: corruption
		}
		var w Write
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			torn = fmt.Errorf("write log line %d: %w", n, err)
			continue
		}
		out = append(out, w)
	}
	return out, sc.Err()
}
