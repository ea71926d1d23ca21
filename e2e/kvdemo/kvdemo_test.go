package kvdemo

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func open(t *testing.T, dir, agentURL string) *Server {
	t.Helper()
	s, err := Open(Config{Host: "h1", Service: "db", DataDir: dir, AgentURL: agentURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func write(s *Server, epoch int64) error {
	_, err := s.Write(WriteRequest{Key: "k", Value: "v", Epoch: epoch, Writer: "w", Seq: 1})
	return err
}

func TestWritesFollowTheEpochRules(t *testing.T) {
	s := open(t, t.TempDir(), "")
	if err := write(s, 5); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("standby accepted a write: %v", err)
	}
	if err := s.SetRole(RoleRequest{Role: RolePrimary, Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		epoch int64
		want  error
	}{
		{"own epoch", 7, nil},
		{"lower epoch", 5, ErrStaleEpoch},
		{"own epoch again", 7, nil},
		{"higher epoch ends the term", 9, ErrNotPrimary},
		{"own epoch after a higher one", 7, ErrStaleEpoch},
	} {
		if err := write(s, tc.epoch); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	st := s.State()
	if st.Role != RoleStandby || st.Highest != 9 || st.Accepted != 2 || st.Stale != 2 {
		t.Errorf("state %+v", st)
	}
	if err := s.SetRole(RoleRequest{Role: RolePrimary, Epoch: 8}); !errors.Is(err, ErrStaleEpoch) {
		t.Errorf("promote below the highest epoch: %v", err)
	}
	if err := s.SetRole(RoleRequest{Role: "leader", Epoch: 10}); err == nil || !strings.Contains(err.Error(), `"leader"`) {
		t.Errorf("bad role: %v", err)
	}
}

func TestAWriteNeedsTheAgentsConfirmation(t *testing.T) {
	var acting atomic.Bool
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/primary/db" || !acting.Load() {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("yes\n"))
	}))
	defer agent.Close()
	s := open(t, t.TempDir(), agent.URL)
	if err := s.SetRole(RoleRequest{Role: RolePrimary, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	acting.Store(true)
	if err := write(s, 3); err != nil {
		t.Fatalf("confirmed primary refused a write: %v", err)
	}
	acting.Store(false) // the lease ran out while the hook had not yet demoted
	if err := write(s, 3); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("unconfirmed primary: %v", err)
	}
	agent.Close()
	if err := write(s, 3); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("agent unreachable: %v", err)
	}
}

func TestARestartKeepsTheLogTheRoleAndTheHighestEpoch(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, "")
	_ = s.SetRole(RoleRequest{Role: RolePrimary, Epoch: 4})
	if err := write(s, 4); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// A torn last line: the process died while appending.
	f, err := os.OpenFile(filepath.Join(dir, LogName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"host":"h1","epo`)
	_ = f.Close()

	s2 := open(t, dir, "")
	if st := s2.State(); st.Role != RolePrimary || st.Epoch != 4 || st.Highest != 4 {
		t.Fatalf("after restart: %+v, want primary at epoch 4", st)
	}
	if err := write(s2, 4); err != nil {
		t.Fatalf("restored primary refused its epoch: %v", err)
	}
	if err := write(s2, 3); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("old epoch after restart: %v", err)
	}
	ws, err := ReadLog(filepath.Join(dir, LogName))
	if err != nil || len(ws) != 2 || ws[0].Epoch != 4 || ws[0].Host != "h1" {
		t.Fatalf("log %+v, %v", ws, err)
	}
}

func TestHTTPStatuses(t *testing.T) {
	s := open(t, t.TempDir(), "")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	post := func(path, body string) int {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct{ path, body string }{
		{"/role", `{"role":"primary","epoch":2}`},
		{"/write", `{"key":"a","value":"1","epoch":2}`},
	} {
		if got := post(tc.path, tc.body); got != http.StatusOK {
			t.Fatalf("POST %s %s: %d", tc.path, tc.body, got)
		}
	}
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"/write", `{"key":"a","value":"1","epoch":1}`, http.StatusConflict},
		{"/write", `{"key":"a","epoch":"two"}`, http.StatusBadRequest},
		{"/write", `{"key":"a","color":"red"}`, http.StatusBadRequest},
		{"/role", `{"role":"primary","epoch":1}`, http.StatusConflict},
		{"/role", `{"role":"boss","epoch":5}`, http.StatusBadRequest},
		{"/write", `{"key":"a","value":"1","epoch":3}`, http.StatusServiceUnavailable},
	} {
		if got := post(tc.path, tc.body); got != tc.want {
			t.Errorf("POST %s %s: %d, want %d", tc.path, tc.body, got, tc.want)
		}
	}
	resp, err := http.Get(srv.URL + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	ws, err := ParseLog(resp.Body)
	if err != nil || len(ws) != 1 || ws[0].Key != "a" {
		t.Fatalf("GET /log: %+v %v", ws, err)
	}
}
