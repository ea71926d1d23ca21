package registry

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

func TestCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
	}{
		{"empty instance", &pb.Instance{}},
		{"instance", &pb.Instance{
			Host:            "ol-db0",
			Service:         "postgres",
			Zone:            "dc1",
			Address:         "10.0.0.5:5432",
			Mode:            pb.Mode_MODE_PRIMARY,
			Health:          pb.Health_HEALTH_PASSING,
			CheckOutput:     "accepting connections",
			HealthChangedAt: &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 123000},
			Tags:            []string{"replica", "nofailover"},
			Priority:        -3,
			Freshness:       1 << 40,
		}},
		{"host", &pb.Host{Name: "ol-db0", Zone: "dc1", AgentVersion: "v0.1.0", StartedAt: &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 5}, LeaseId: 0x7fffffffffffffff, LeaseTtlSeconds: 5}},
		{"primary", &pb.Primary{Host: "ol-db0", Address: "10.0.0.5:5432", Epoch: 1234, Zone: "dc1"}},
		{"member", &pb.Member{Name: "etcd-dc1", Zone: "dc1", ClientUrls: []string{"http://a:2379"}, PeerUrls: []string{"http://a:2380", "http://b:2380"}}},
		{"view", &pb.View{
			Service:   "postgres",
			Mode:      pb.Mode_MODE_PRIMARY,
			Status:    pb.Status_STATUS_READ_WRITE,
			Instances: []*pb.Instance{{Host: "a", Health: pb.Health_HEALTH_CRITICAL}},
			Primary:   &pb.Primary{Host: "a", Epoch: 7},
			Revision:  99,
			Stale:     true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Encode(tt.msg)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if s := MustEncode(tt.msg); s != string(b) {
				t.Errorf("MustEncode = %q, Encode = %q; want the same", s, b)
			}
			got := tt.msg.ProtoReflect().New().Interface()
			if err := Decode(b, got); err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if diff := cmp.Diff(tt.msg, got, protocmp.Transform()); diff != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Stored values are meant to be read with etcdctl: field names as in the
// .proto file, enums by name.
func TestEncodeIsReadable(t *testing.T) {
	b, err := Encode(&pb.Instance{Host: "ol-db0", CheckOutput: "ok", Health: pb.Health_HEALTH_PASSING})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"host"`, `"check_output"`, `"HEALTH_PASSING"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Encode = %s, want it to contain %s", b, want)
		}
	}
	if strings.Contains(string(b), "checkOutput") {
		t.Errorf("Encode = %s, want proto field names, not lowerCamelCase", b)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *pb.Instance
	}{
		{"empty object", `{}`, &pb.Instance{}},
		{"proto names", `{"host":"a","check_output":"ok","health":"HEALTH_PASSING"}`,
			&pb.Instance{Host: "a", CheckOutput: "ok", Health: pb.Health_HEALTH_PASSING}},
		{"json names", `{"checkOutput":"ok","healthChangedAt":"2024-01-02T03:04:05Z"}`,
			&pb.Instance{CheckOutput: "ok", HealthChangedAt: &timestamppb.Timestamp{Seconds: 1704164645}}},
		{"enum as number", `{"mode":2}`, &pb.Instance{Mode: pb.Mode_MODE_PRIMARY}},
		{"unknown field ignored", `{"host":"a","added_by_newer_writer":{"x":[1,2]},"zone":"dc1"}`,
			&pb.Instance{Host: "a", Zone: "dc1"}},
		{"unknown enum name ignored", `{"host":"a","health":"HEALTH_FROM_THE_FUTURE"}`, &pb.Instance{Host: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := &pb.Instance{}
			if err := Decode([]byte(tt.in), got); err != nil {
				t.Fatalf("Decode(%s): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Decode(%s) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ``},
		{"not json", `hello`},
		{"truncated", `{"host":"a"`},
		{"array", `[1,2]`},
		{"string", `"host"`},
		{"wrong type", `{"host":5}`},
		{"wrong nested type", `{"tags":"a"}`},
		{"bad timestamp", `{"health_changed_at":"yesterday"}`},
		{"trailing data", `{} {}`},
		{"binary", "\x00\xff\x10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Decode([]byte(tt.in), &pb.Instance{})
			if err == nil {
				t.Fatalf("Decode(%q) = nil, want error", tt.in)
			}
			if got := err.Error(); !strings.Contains(got, "decode Instance") {
				t.Errorf("Decode(%q) error = %q, want it to name the message type", tt.in, got)
			}
		})
	}
}
