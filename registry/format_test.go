package registry

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

func TestFormatView(t *testing.T) {
	db0 := &pb.Instance{Host: "db0", Zone: "dc1", Address: "10.0.0.1:5432", Health: healthPassing}
	db1 := &pb.Instance{Host: "db1", Zone: "dc2", Address: "10.0.0.2:5432", Health: healthFailing}
	prim := &pb.Primary{Host: "db0", Zone: "dc1", Address: "10.0.0.1:5432", Epoch: 31}
	const both = "1/2 healthy: db0@dc1 10.0.0.1:5432 passing, db1@dc2 10.0.0.2:5432 critical"
	tests := []struct {
		name string
		view *pb.View
		want string
	}{
		{"removed service", &pb.View{Service: "cache", Status: pb.Status_STATUS_DOWN, Revision: 3},
			"cache DOWN rev=3 no instances"},
		{"pool", &pb.View{Service: "cache", Mode: modePool, Status: pb.Status_STATUS_READ_WRITE, Revision: 12, Instances: []*pb.Instance{db0, db1}},
			"cache pool READ_WRITE rev=12 " + both},
		{"primary", &pb.View{Service: "db", Mode: modePrimary, Status: pb.Status_STATUS_READ_WRITE, Revision: 40, Primary: prim, Instances: []*pb.Instance{db0, db1}},
			"db primary READ_WRITE rev=40 primary=db0@dc1 10.0.0.1:5432 epoch=31 " + both},
		{"paused", &pb.View{Service: "db", Mode: modePrimary, Status: pb.Status_STATUS_READ_WRITE, Revision: 40, Paused: true, Primary: prim, Instances: []*pb.Instance{db0, db1}},
			"db primary READ_WRITE rev=40 PAUSED primary=db0@dc1 10.0.0.1:5432 epoch=31 " + both},
		{"stale and paused", &pb.View{Service: "db", Mode: modePrimary, Status: pb.Status_STATUS_READ_ONLY, Revision: 41, Stale: true, Paused: true, Instances: []*pb.Instance{db0}},
			"db primary READ_ONLY rev=41 STALE PAUSED 1/1 healthy: db0@dc1 10.0.0.1:5432 passing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatView(tt.view); got != tt.want {
				t.Errorf("FormatView =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

func TestFormatEvent(t *testing.T) {
	at := time.Date(2025, 3, 1, 14, 2, 11, 42_000_000, time.UTC)
	local := at.Local().Format("2006-01-02 15:04:05.000")
	tests := []struct {
		name string
		ev   *pb.Event
		want string
	}{
		{"promoted", &pb.Event{Kind: pb.EventKind_EVENT_KIND_PROMOTED, Host: "ol-db1", Epoch: 4211, Reason: "check failed on ol-db0", At: timestamppb.New(at)},
			local + " PROMOTED ol-db1 epoch=4211 check failed on ol-db0"},
		{"no host, epoch or reason", &pb.Event{Kind: pb.EventKind_EVENT_KIND_PAUSED, At: timestamppb.New(at)},
			local + " PAUSED -"},
		{"no time", &pb.Event{Kind: pb.EventKind_EVENT_KIND_SWITCHOVER_REQUESTED, Host: "ol-db0", Epoch: 7, Reason: "operator switchover to ol-db1"},
			"- SWITCHOVER_REQUESTED ol-db0 epoch=7 operator switchover to ol-db1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatEvent(tt.ev); got != tt.want {
				t.Errorf("FormatEvent =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}
