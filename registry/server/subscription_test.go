package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// sv is a view reduced to what messages and sortViews look at.
type sv struct {
	Service  string
	Revision int64
}

func viewsOf(in []sv) []*pb.View {
	out := make([]*pb.View, len(in))
	for i, v := range in {
		out[i] = &pb.View{Service: v.Service, Revision: v.Revision, Status: pb.Status_STATUS_READ_WRITE}
	}
	return out
}

func svOf(views []*pb.View) []sv {
	var out []sv
	for _, v := range views {
		out = append(out, sv{v.GetService(), v.GetRevision()})
	}
	return out
}

func TestMessages(t *testing.T) {
	type msg struct {
		Revision int64
		View     sv
	}
	tests := []struct {
		name  string
		views []sv
		rev   int64
		want  []msg
	}{
		{"none", nil, 10, []msg{}},
		{"one view gets rev", []sv{{"postgres", 7}}, 10, []msg{{10, sv{"postgres", 7}}}},
		{"one view at rev", []sv{{"postgres", 10}}, 10, []msg{{10, sv{"postgres", 10}}}},
		{
			"sorted by revision, each up to just before the next",
			[]sv{{"solr", 7}, {"postgres", 3}, {"memcached", 5}},
			10,
			[]msg{{4, sv{"postgres", 3}}, {6, sv{"memcached", 5}}, {10, sv{"solr", 7}}},
		},
		{
			"adjacent revisions",
			[]sv{{"b", 4}, {"a", 3}},
			4,
			[]msg{{3, sv{"a", 3}}, {4, sv{"b", 4}}},
		},
		{
			"same revision (one txn): earlier message claims only rev-1",
			[]sv{{"solr", 5}, {"memcached", 5}, {"postgres", 5}},
			5,
			[]msg{{4, sv{"memcached", 5}}, {4, sv{"postgres", 5}}, {5, sv{"solr", 5}}},
		},
		{
			"capped at rev",
			[]sv{{"a", 2}, {"b", 20}},
			10,
			[]msg{{10, sv{"a", 2}}, {10, sv{"b", 20}}},
		},
		{
			"partly capped",
			[]sv{{"c", 30}, {"a", 2}, {"b", 8}},
			12,
			[]msg{{7, sv{"a", 2}}, {12, sv{"b", 8}}, {12, sv{"c", 30}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			views := viewsOf(tt.views)
			out := messages(views, tt.rev)

			got := []msg{}
			for i, m := range out {
				if n := len(m.GetViews()); n != 1 {
					t.Fatalf("message %d carries %d views, want 1", i, n)
				}
				if m.GetSnapshot() {
					t.Errorf("message %d is marked snapshot", i)
				}
				got = append(got, msg{m.GetRevision(), sv{m.GetViews()[0].GetService(), m.GetViews()[0].GetRevision()}})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages(%v, %d) mismatch (-want +got):\n%s", tt.views, tt.rev, diff)
			}
			checkResumable(t, out, tt.rev)
		})
	}
}

// checkResumable states the guarantee documented on Next: resuming from any
// message's revision loses nothing, because every view not yet delivered is
// newer than that revision; revisions never go backwards; the last is rev.
func checkResumable(t *testing.T, out []*pb.WatchResponse, rev int64) {
	t.Helper()
	for i, m := range out {
		if m.GetRevision() > rev {
			t.Errorf("message %d revision %d is beyond rev %d", i, m.GetRevision(), rev)
		}
		if i > 0 && m.GetRevision() < out[i-1].GetRevision() {
			t.Errorf("message %d revision %d is below message %d's %d", i, m.GetRevision(), i-1, out[i-1].GetRevision())
		}
		for j := i + 1; j < len(out); j++ {
			if later := out[j].GetViews()[0]; later.GetRevision() <= m.GetRevision() {
				t.Errorf("message %d claims revision %d, but %s@%d is only sent later in message %d",
					i, m.GetRevision(), later.GetService(), later.GetRevision(), j)
			}
		}
	}
	if n := len(out); n > 0 && out[n-1].GetRevision() != rev {
		t.Errorf("last message revision = %d, want rev %d", out[n-1].GetRevision(), rev)
	}
}

// The views in a message are the very views passed in: they are shared,
// immutable, and not copied per stream.
func TestMessagesKeepViews(t *testing.T) {
	views := viewsOf([]sv{{"b", 2}, {"a", 1}})
	want := []*pb.View{views[1], views[0]}
	out := messages(views, 3)
	for i, m := range out {
		if m.GetViews()[0] != want[i] {
			t.Errorf("message %d carries a different view object than the one passed in", i)
		}
	}
	if diff := cmp.Diff(viewsOf([]sv{{"a", 1}, {"b", 2}}), []*pb.View{out[0].GetViews()[0], out[1].GetViews()[0]}, protocmp.Transform()); diff != "" {
		t.Errorf("views changed (-want +got):\n%s", diff)
	}
}

func TestSortViews(t *testing.T) {
	tests := []struct {
		name string
		in   []sv
		want []sv
	}{
		{"nil", nil, nil},
		{"one", []sv{{"a", 1}}, []sv{{"a", 1}}},
		{"by revision", []sv{{"a", 9}, {"b", 3}, {"c", 5}}, []sv{{"b", 3}, {"c", 5}, {"a", 9}}},
		{"ties by service", []sv{{"solr", 4}, {"memcached", 4}, {"postgres", 2}, {"infobase", 4}},
			[]sv{{"postgres", 2}, {"infobase", 4}, {"memcached", 4}, {"solr", 4}}},
		{"already sorted", []sv{{"a", 1}, {"b", 1}, {"a", 2}}, []sv{{"a", 1}, {"b", 1}, {"a", 2}}},
		{"revision before name", []sv{{"a", 2}, {"z", 1}}, []sv{{"z", 1}, {"a", 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			views := viewsOf(tt.in)
			ret := sortViews(views)
			if diff := cmp.Diff(tt.want, svOf(ret)); diff != "" {
				t.Errorf("sortViews(%v) mismatch (-want +got):\n%s", tt.in, diff)
			}
			// It sorts in place and returns its argument.
			if diff := cmp.Diff(tt.want, svOf(views)); diff != "" {
				t.Errorf("sortViews(%v) left the argument unsorted (-want +got):\n%s", tt.in, diff)
			}
			if len(ret) != len(views) || (len(ret) > 0 && &ret[0] != &views[0]) {
				t.Errorf("sortViews returned a different slice than its argument")
			}
		})
	}
}

// A resumed subscriber drops views it already knows (revision at or below
// the one it resumed from), except when the hub re-sends them with a new
// stale mark: then the mark is news.
func TestPushRestampReachesResumedSubscriber(t *testing.T) {
	s := &Subscription{minRev: 10, pending: map[string]*pb.View{}, notify: make(chan struct{}, 1)}
	known := &pb.View{Service: "db", Revision: 7}
	s.push([]*pb.View{known}, 12, false)
	if len(s.pending) != 0 {
		t.Fatalf("a view at revision 7 was queued for a subscriber resumed from 10")
	}
	s.push([]*pb.View{known}, 12, true)
	if s.pending["db"] != known {
		t.Fatalf("a re-stamped view was not queued: pending %v", s.pending)
	}
}
