package demoservice_test

import (
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/understudy-dev/understudy/agent/demoservice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T) *demoservice.Service {
	t.Helper()
	s, err := demoservice.Start("demo", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// greeting dials addr and returns what the service says, or the dial error.
func greeting(t *testing.T, addr string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading greeting from %s: %v", addr, err)
	}
	return string(b), nil
}

func TestDemoServiceFailHealKeepAddress(t *testing.T) {
	s := start(t)
	addr := s.Addr()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr() = %q, want the port actually chosen", addr)
	}

	type state struct {
		addr    string
		healthy bool
		answers bool
	}
	observe := func() state {
		t.Helper()
		got, err := greeting(t, s.Addr())
		if err == nil && got != "demo ok\n" {
			t.Errorf("greeting = %q, want %q", got, "demo ok\n")
		}
		return state{addr: s.Addr(), healthy: s.Healthy(), answers: err == nil}
	}
	steps := []struct {
		name string
		do   func() error
		want state
	}{
		{"started", func() error { return nil }, state{addr, true, true}},
		{"Fail", func() error { s.Fail(); return nil }, state{addr, false, false}},
		{"Fail again", func() error { s.Fail(); return nil }, state{addr, false, false}},
		{"Heal", s.Heal, state{addr, true, true}},
		{"Heal again", s.Heal, state{addr, true, true}},
		{"Fail after Heal", func() error { s.Fail(); return nil }, state{addr, false, false}},
		{"Heal after second Fail", s.Heal, state{addr, true, true}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := observe(); got != st.want {
			t.Errorf("after %s: got %+v, want %+v", st.name, got, st.want)
		}
	}
}

func TestDemoServiceCloseIsIdempotentAndWaits(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before func(*demoservice.Service)
	}{
		{"healthy", func(*demoservice.Service) {}},
		{"failed", (*demoservice.Service).Fail},
		{"healed", func(s *demoservice.Service) {
			s.Fail()
			if err := s.Heal(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t)
			addr := s.Addr()
			tt.before(s)
			if s.Healthy() {
				// A greeting proves the accept loop is running, so
				// serveGoroutines must see it.
				if _, err := greeting(t, addr); err != nil {
					t.Fatal(err)
				}
				if serveGoroutines() == 0 {
					t.Fatal("no serve goroutine found while serving; serveGoroutines cannot see it")
				}
			}

			s.Close()
			// Close waits for the accept loop: no retry, it must be gone now.
			if n := serveGoroutines(); n != 0 {
				t.Errorf("%d serve goroutines still running right after Close", n)
			}
			if s.Healthy() {
				t.Error("Healthy() = true after Close")
			}
			if _, err := greeting(t, addr); err == nil {
				t.Errorf("%s still answers after Close", addr)
			}

			s.Close() // again: must neither panic nor block
			s.Fail()
			if err := s.Heal(); err == nil {
				t.Error("Heal after Close succeeded, want an error")
			}
			if s.Healthy() {
				t.Error("Healthy() = true after Heal on a closed service")
			}
		})
	}
}

// serveGoroutines counts goroutines running this package's accept loop.
func serveGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "demoservice.serve(")
}
