package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/agent/demoservice"
)

func TestSmoother(t *testing.T) {
	const T, F = true, false
	type step struct{ passing, changed bool }
	tests := []struct {
		name       string
		rise, fall int
		in         []bool
		want       []step
	}{
		{
			name: "first pass decides at once",
			rise: 3, fall: 3,
			in:   []bool{T},
			want: []step{{T, true}},
		},
		{
			name: "a first failure waits for fall failures in a row",
			rise: 3, fall: 3,
			in:   []bool{F, F, F},
			want: []step{{F, false}, {F, false}, {F, true}},
		},
		{
			name: "a pass before fall failures decides passing at once",
			rise: 3, fall: 3,
			in:   []bool{F, F, T},
			want: []step{{F, false}, {F, false}, {T, true}},
		},
		{
			name: "agreeing results change nothing",
			rise: 2, fall: 2,
			in:   []bool{T, T, T},
			want: []step{{T, true}, {T, false}, {T, false}},
		},
		{
			name: "fall 2 needs two failures in a row",
			rise: 2, fall: 2,
			in:   []bool{T, F, F, F},
			want: []step{{T, true}, {T, false}, {F, true}, {F, false}},
		},
		{
			name: "rise 2 needs two passes in a row",
			rise: 2, fall: 2,
			in:   []bool{F, F, T, T, T},
			want: []step{{F, false}, {F, true}, {F, false}, {T, true}, {T, false}},
		},
		{
			name: "rise 3 fall 1",
			rise: 3, fall: 1,
			in:   []bool{T, F, T, T, T},
			want: []step{{T, true}, {F, true}, {F, false}, {F, false}, {T, true}},
		},
		{
			name: "rise 1 fall 1 follows every result",
			rise: 1, fall: 1,
			in:   []bool{T, F, T, F},
			want: []step{{T, true}, {F, true}, {T, true}, {F, true}},
		},
		{
			name: "an agreeing result resets the fall streak",
			rise: 2, fall: 2,
			in:   []bool{T, F, T, F, T, F, F},
			want: []step{{T, true}, {T, false}, {T, false}, {T, false}, {T, false}, {T, false}, {F, true}},
		},
		{
			name: "an agreeing result resets the rise streak",
			rise: 3, fall: 2,
			in:   []bool{F, F, T, T, F, T, T, T},
			want: []step{{F, false}, {F, true}, {F, false}, {F, false}, {F, false}, {F, false}, {F, false}, {T, true}},
		},
		{
			name: "streak starts afresh after a change",
			rise: 2, fall: 2,
			in:   []bool{T, F, F, T, F, T, T},
			want: []step{{T, true}, {T, false}, {F, true}, {F, false}, {F, false}, {F, false}, {T, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in) != len(tt.want) {
				t.Fatalf("bad test: %d inputs, %d wants", len(tt.in), len(tt.want))
			}
			s := Smoother{Rise: tt.rise, Fall: tt.fall}
			for i, pass := range tt.in {
				var got step
				got.passing, got.changed = s.Observe(pass)
				if got != tt.want[i] {
					t.Errorf("Observe #%d (%v) = (passing %v, changed %v), want (passing %v, changed %v)",
						i, pass, got.passing, got.changed, tt.want[i].passing, tt.want[i].changed)
				}
			}
		})
	}
}

func TestNewCheckerKind(t *testing.T) {
	const addr = "127.0.0.1:11211"
	tests := []struct {
		name string
		cfg  CheckConfig
		want Checker
	}{
		{"empty is tcp to self", CheckConfig{}, tcpCheck{addr: addr}},
		{"self is tcp to the address", CheckConfig{TCP: "self"}, tcpCheck{addr: addr}},
		{"tcp elsewhere", CheckConfig{TCP: "127.0.0.1:9"}, tcpCheck{addr: "127.0.0.1:9"}},
		{"exec", CheckConfig{Exec: []string{"true"}}, execCheck{argv: []string{"true"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewChecker(tt.cfg, addr)
			switch w := tt.want.(type) {
			case tcpCheck:
				if g, ok := got.(tcpCheck); !ok || g != w {
					t.Errorf("NewChecker = %#v, want %#v", got, w)
				}
			case execCheck:
				if g, ok := got.(execCheck); !ok || strings.Join(g.argv, " ") != strings.Join(w.argv, " ") {
					t.Errorf("NewChecker = %#v, want %#v", got, w)
				}
			}
		})
	}
	if got, ok := NewChecker(CheckConfig{HTTP: "http://x/"}, addr).(httpCheck); !ok || got.url != "http://x/" {
		t.Errorf("NewChecker(http) = %#v, want httpCheck for http://x/", got)
	}
}

// runCheck runs c with a timeout and returns its output and error.
func runCheck(t *testing.T, c Checker, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Check(ctx)
}

func TestTCPCheckFollowsDemoService(t *testing.T) {
	svc, err := demoservice.Start("demo", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	c := NewChecker(CheckConfig{TCP: "self"}, svc.Addr())

	expect := func(stage string, wantPass bool) {
		t.Helper()
		out, err := runCheck(t, c, 2*time.Second)
		if got := err == nil; got != wantPass {
			t.Fatalf("%s: check passed = %v (output %q, err %v), want %v", stage, got, out, err, wantPass)
		}
		if wantPass && !strings.Contains(out, svc.Addr()) {
			t.Errorf("%s: output %q does not name %s", stage, out, svc.Addr())
		}
	}
	expect("started", true)
	svc.Fail()
	expect("after Fail", false)
	if err := svc.Heal(); err != nil {
		t.Fatal(err)
	}
	expect("after Heal", true)
}

func TestHTTPCheck(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		closed   bool
		wantPass bool
		wantOut  string
	}{
		{name: "200 passes", status: http.StatusOK, wantPass: true, wantOut: "200 OK"},
		{name: "204 passes", status: http.StatusNoContent, wantPass: true, wantOut: "204 No Content"},
		{name: "503 fails", status: http.StatusServiceUnavailable, wantPass: false, wantOut: "503 Service Unavailable"},
		{name: "closed server fails", status: http.StatusOK, closed: true, wantPass: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
			}))
			url := srv.URL + "/health"
			if tt.closed {
				srv.Close()
			} else {
				t.Cleanup(srv.Close)
			}
			out, err := runCheck(t, NewChecker(CheckConfig{HTTP: url}, ""), 2*time.Second)
			if got := err == nil; got != tt.wantPass {
				t.Fatalf("check passed = %v (output %q, err %v), want %v", got, out, err, tt.wantPass)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output %q does not contain %q", out, tt.wantOut)
			}
			if err != nil && tt.wantOut != "" && !strings.Contains(err.Error(), tt.wantOut) {
				t.Errorf("error %q does not contain %q", err, tt.wantOut)
			}
		})
	}
}

func TestExecCheck(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		wantPass bool
		wantOut  string // substring of the output
		wantErr  string // substring of the error
	}{
		{name: "true passes", argv: []string{"true"}, wantPass: true},
		{name: "false fails", argv: []string{"false"}, wantErr: "exit status 1"},
		{name: "output kept", argv: []string{"sh", "-c", "echo boom; exit 3"}, wantOut: "boom", wantErr: "exit status 3"},
		{name: "stderr kept", argv: []string{"sh", "-c", "echo oops >&2"}, wantPass: true, wantOut: "oops"},
		{name: "missing command fails", argv: []string{"/nonexistent/understudy-check"}, wantErr: "nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCheck(t, NewChecker(CheckConfig{Exec: tt.argv}, ""), 10*time.Second)
			if got := err == nil; got != tt.wantPass {
				t.Fatalf("check passed = %v (output %q, err %v), want %v", got, out, err, tt.wantPass)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("output %q does not contain %q", out, tt.wantOut)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if err != nil && tt.wantOut != "" && !strings.Contains(err.Error(), tt.wantOut) {
				t.Errorf("error %q does not contain the output %q", err, tt.wantOut)
			}
		})
	}
}

func TestExecCheckTimeout(t *testing.T) {
	tests := []struct {
		name string
		argv []string
	}{
		{"sleep", []string{"sleep", "5"}},
		// sh is killed at the timeout but its child keeps the output pipe
		// open; the check must not wait for it.
		{"grandchild holds the pipe", []string{"sh", "-c", "sleep 5 & wait"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker(CheckConfig{Exec: tt.argv}, "")
			start := time.Now()
			out, err := runCheck(t, c, 100*time.Millisecond)
			// A hang guard, not a performance target: the command alone takes 5s.
			if elapsed := time.Since(start); elapsed > 3*time.Second {
				t.Errorf("check returned after %v; want it cut short by the 100ms timeout", elapsed)
			}
			if err == nil {
				t.Fatalf("check passed (output %q), want a timeout", out)
			}
			if !strings.Contains(err.Error(), "timed out") {
				t.Errorf("error %q does not say it timed out", err)
			}
		})
	}
}
