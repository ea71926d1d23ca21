package elector

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// A switchover request concerns one handover: it counts while its primary
// holds the role or was the last to give it up, and not after.
func TestSwitchoverRequestIsMootOnceAnotherHostTookOver(t *testing.T) {
	now := time.Now()
	req := &pb.Control{SwitchoverFrom: "h1", SwitchoverTo: "h3", RequestedAt: timestamppb.New(now)}
	tests := []struct {
		name     string
		leader   string // "" when the leader key is absent
		lastGone string
		control  *pb.Control
		wantOK   bool
	}{
		{"h1 still primary", "h1", "", req, true},
		{"h1 just resigned", "", "h1", req, true},
		{"h2 took over meanwhile", "h2", "h1", req, false},
		{"h2 gone after taking over", "", "h2", req, false},
		{"paused", "h1", "", &pb.Control{Paused: true, SwitchoverFrom: "h1", RequestedAt: timestamppb.New(now)}, false},
		{"too old", "h1", "", &pb.Control{SwitchoverFrom: "h1", RequestedAt: timestamppb.New(now.Add(-time.Minute))}, false},
		{"no request", "h1", "", &pb.Control{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld("db")
			w.control = tt.control
			if tt.leader != "" {
				w.leader = &pb.Leader{Host: tt.leader}
			}
			w.gone.host = tt.lastGone
			r, ok := w.switchover(now, 30*time.Second)
			if ok != tt.wantOK || ok && r.from != "h1" {
				t.Fatalf("switchover() = %q, %v; want ok=%v", r.from, ok, tt.wantOK)
			}
		})
	}
}
