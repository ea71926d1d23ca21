package kvdemo

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestNoAskTakesAnyWriteWhilePrimaryAtItsOwnEpoch(t *testing.T) {
	// The agent would refuse: a server that never asks does not notice.
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer agent.Close()
	s, err := Open(Config{Host: "h1", Service: "db", DataDir: t.TempDir(), AgentURL: agent.URL, NoAsk: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if err := write(s, 0); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("standby took a write: %v", err)
	}
	if err := s.SetRole(RoleRequest{Role: RolePrimary, Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	for _, clientEpoch := range []int64{0, 3, 7, 12} {
		rec, err := s.Write(WriteRequest{Key: "k", Value: "v", Epoch: clientEpoch, Writer: "w", Seq: 1})
		if err != nil || rec.Epoch != 7 || rec.Host != "h1" {
			t.Errorf("client epoch %d: %+v, %v; want logged at epoch 7 on h1", clientEpoch, rec, err)
		}
	}
	if err := s.SetRole(RoleRequest{Role: RoleStandby}); err != nil {
		t.Fatal(err)
	}
	if err := write(s, 7); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("demoted server took a write: %v", err)
	}
	ws, err := ReadLog(s.Path())
	if err != nil || len(ws) != 4 {
		t.Fatalf("log %+v, %v", ws, err)
	}
}

func TestDemoteOnDiskReachesAServerThatIsDown(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Host: "h1", Service: "db", DataDir: dir, NoAsk: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetRole(RoleRequest{Role: RolePrimary, Epoch: 4}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close() // crashed
	if err := DemoteOnDisk(dir); err != nil {
		t.Fatal(err)
	}
	s2, l, err := Listen(Config{Host: "h1", Service: "db", DataDir: dir, NoAsk: true}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s2.Close(); _ = l.Close() }()
	if st := s2.State(); st.Role != RoleStandby || st.Epoch != 4 || st.Highest != 4 {
		t.Fatalf("after restart: %+v, want a standby that remembers epoch 4", st)
	}
}

// A demote hook that runs while the server starts waits until the server
// listens: its POST then reaches the server instead of finding nothing.
func TestDemoteOnDiskWaitsForAStartingServerToListen(t *testing.T) {
	dir := t.TempDir()
	if err := withRoleLock(dir, func() error { return writeRole(dir, RoleRequest{Role: RolePrimary, Epoch: 2}) }); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockRole(dir) // the server, between reading the role and listening
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- DemoteOnDisk(dir) }()
	select {
	case err := <-done:
		t.Fatalf("the hook wrote the role while the server was starting: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r, err := readRole(dir)
	if err != nil || r.Role != RoleStandby || r.Epoch != 2 {
		t.Fatalf("role file %+v, %v", r, err)
	}
}

func TestSlowHealth(t *testing.T) {
	s := open(t, t.TempDir(), "")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := &http.Client{Timeout: 150 * time.Millisecond}
	get := func() error {
		resp, err := c.Get(srv.URL + "/health")
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	for _, tc := range []struct {
		d    string
		slow bool
	}{{"5s", true}, {"0s", false}} {
		resp, err := http.Post(srv.URL+"/slow?for="+tc.d, "", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /slow?for=%s: %v %v", tc.d, resp, err)
		}
		_ = resp.Body.Close()
		if err := get(); (err != nil) != tc.slow {
			t.Errorf("slow for %s: GET /health err %v", tc.d, err)
		}
	}
}
