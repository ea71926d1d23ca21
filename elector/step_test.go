package elector

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// The decision core's table: each case is a row of the design's failure
// table or a case found in testing, decided in microseconds.

const (
	me      = "h1"
	myLease = clientv3.LeaseID(7)
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// worldOpt shapes a world for one case.
type worldOpt func(w *world)

func leaderIs(host string, epoch int64, lease clientv3.LeaseID) worldOpt {
	return func(w *world) {
		w.leader, w.leaderEpoch, w.leaderLease = &pb.Leader{Host: host}, epoch, lease
	}
}

func primaryIs(host string, epoch int64) worldOpt {
	return func(w *world) { w.primary = &pb.Primary{Host: host, Epoch: epoch} }
}

func standby(host string, health pb.Health, freshness int64, tags ...string) worldOpt {
	return func(w *world) {
		w.hosts[host] = true
		w.instances[host] = &pb.Instance{Host: host, Health: health, Freshness: freshness, Tags: tags}
	}
}

func markAt(freshness int64) worldOpt {
	return func(w *world) { w.mark = &pb.Mark{Freshness: freshness} }
}

func control(c *pb.Control) worldOpt { return func(w *world) { w.control = c } }

func revAt(rev int64) worldOpt { return func(w *world) { w.rev = rev } }

const (
	passing  = pb.Health_HEALTH_PASSING
	critical = pb.Health_HEALTH_CRITICAL
)

func TestStep(t *testing.T) {
	healthy := Local{Healthy: true, Checked: true}
	failing := Local{Healthy: false, Checked: true}
	acting := state{acting: true, epoch: 100, synced: true}
	fence := t0.Add(2 * time.Second)
	tests := []struct {
		name       string
		st         state
		maxLag     int64
		local      Local
		world      []worldOpt
		fencePoint time.Time
		want       []action // kind, epoch, event and a word of the reason are compared
		wantWake   time.Duration
		after      func(t *testing.T, s state)
	}{
		{
			name: "primary's check fails, a healthy standby exists: demote, then the keys go",
			st:   acting, local: failing,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", passing, 0)},
			want:  []action{{kind: actDemote, epoch: 100, event: pb.EventKind_EVENT_KIND_DEMOTED, reason: "check failed"}},
		},
		{
			name: "primary's check fails, no healthy standby: keep the role and say so once",
			st:   acting, local: failing,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", critical, 0)},
			want:  []action{{kind: actEvent, epoch: 100, event: pb.EventKind_EVENT_KIND_KEPT_ROLE, reason: "no healthy eligible standby"}},
			after: func(t *testing.T, s state) {
				if !s.keptRole || !s.acting {
					t.Fatalf("keptRole %v acting %v; want both", s.keptRole, s.acting)
				}
			},
		},
		{
			name: "primary's check fails again with nobody to take over: no second event",
			st:   state{acting: true, epoch: 100, synced: true, keptRole: true}, local: failing,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", critical, 0)},
		},
		{
			name: "primary's check fails, the only healthy standby lags the mark beyond max_lag: keep the role",
			st:   acting, local: Local{Checked: true, Freshness: 5000}, maxLag: 100,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", passing, 1000), markAt(5000)},
			want:  []action{{kind: actWriteMark, epoch: 100}, {kind: actEvent, epoch: 100, event: pb.EventKind_EVENT_KIND_KEPT_ROLE}},
		},
		{
			name: "primary's check fails, the healthy standby is tagged nofailover: keep the role",
			st:   acting, local: failing,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", passing, 0, registry.NoFailoverTag)},
			want:  []action{{kind: actEvent, epoch: 100, event: pb.EventKind_EVENT_KIND_KEPT_ROLE}},
		},
		{
			name: "primary past its fence point (agent frozen, etcd unreachable): fence",
			st:   acting, local: healthy, fencePoint: t0.Add(-time.Millisecond),
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100)},
			want:  []action{{kind: actDemote, epoch: 100, event: pb.EventKind_EVENT_KIND_FENCED, reason: "renewals stopped"}},
		},
		{
			name: "primary whose leader key is gone: demote",
			st:   acting, local: healthy,
			world: []worldOpt{revAt(200)},
			want:  []action{{kind: actDemote, epoch: 100, event: pb.EventKind_EVENT_KIND_DEMOTED, reason: "leadership lost"}},
		},
		{
			name: "fresh primary whose world has not caught up with its own key: keep acting",
			st:   acting, local: healthy,
			world:    []worldOpt{revAt(99)},
			wantWake: time.Second,
		},
		{
			name: "primary while etcd cannot be read: only the fence point can stop it",
			st:   state{acting: true, epoch: 100}, local: healthy,
			world:    []worldOpt{revAt(200)},
			wantWake: time.Second,
		},
		{
			name: "primary wakes at its fence point at the latest",
			st:   acting, local: healthy, fencePoint: t0.Add(300 * time.Millisecond),
			world:    []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100)},
			wantWake: 300 * time.Millisecond,
		},
		{
			name: "primary reports fresher data: the high-water mark follows",
			st:   state{acting: true, epoch: 100, synced: true, markWritten: 40}, local: Local{Healthy: true, Checked: true, Freshness: 41},
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100)},
			want:  []action{{kind: actWriteMark, epoch: 100, freshness: 41}},
		},
		{
			name: "paused primary with a failing check does nothing",
			st:   acting, local: failing,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", passing, 0), control(&pb.Control{Paused: true})},
		},
		{
			name: "switchover away from me to a healthy target: demote",
			st:   acting, local: healthy,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", passing, 0),
				control(&pb.Control{SwitchoverFrom: me, SwitchoverTo: "h2", RequestedAt: timestamppb.New(t0)})},
			want: []action{{kind: actDemote, epoch: 100, reason: "switchover"}},
		},
		{
			name: "switchover away from me with nobody able to take over: keep the role",
			st:   acting, local: healthy,
			world: []worldOpt{leaderIs(me, 100, myLease), primaryIs(me, 100), standby("h2", critical, 0),
				control(&pb.Control{SwitchoverFrom: me, RequestedAt: timestamppb.New(t0)})},
		},
		{
			name: "standby, leader key absent, best ranked: campaign at once",
			st:   state{synced: true}, local: healthy,
			world: []worldOpt{standby("h2", passing, 0)},
			want:  []action{{kind: actCampaign}},
		},
		{
			name: "standby, leader key absent, second ranked: wait a step",
			st:   state{synced: true}, local: healthy,
			world:    []worldOpt{standby("h0", passing, 0)},
			wantWake: 100 * time.Millisecond,
		},
		{
			name: "standby behind the durable high-water mark: never takes over alone, says so once",
			st:   state{synced: true}, local: Local{Healthy: true, Checked: true, Freshness: 10}, maxLag: 5,
			world:    []worldOpt{markAt(153), revAt(300)},
			want:     []action{{kind: actEvent, event: pb.EventKind_EVENT_KIND_BLOCKED, reason: "max_lag"}},
			wantWake: time.Second,
		},
		{
			name: "standby behind the mark, an operator forced it: campaign, forced",
			st:   state{synced: true}, local: Local{Healthy: true, Checked: true, Freshness: 10}, maxLag: 5,
			world: []worldOpt{markAt(153), control(&pb.Control{SwitchoverTo: me, Force: true, RequestedAt: timestamppb.New(t0)})},
			want:  []action{{kind: actCampaign, force: true, switchover: true}},
		},
		{
			name: "another standby is forced: I wait for it",
			st:   state{synced: true}, local: healthy, maxLag: 5,
			world:    []worldOpt{standby("h2", passing, 0), control(&pb.Control{SwitchoverTo: "h2", Force: true, RequestedAt: timestamppb.New(t0)})},
			wantWake: switchoverHeadStart * 100 * time.Millisecond,
		},
		{
			name: "restarted agent whose earlier term is gone: demote before anything else",
			st:   state{synced: true, restored: 90}, local: healthy,
			world: []worldOpt{leaderIs("h2", 120, 3), primaryIs("h2", 120)},
			want:  []action{{kind: actDemote, epoch: 90, event: pb.EventKind_EVENT_KIND_DEMOTED, reason: "restarted"}},
			after: func(t *testing.T, s state) {
				if s.restored != 0 {
					t.Fatal("restored not consumed")
				}
			},
		},
		{
			name: "restarted agent that resumed its lease and still holds its term: resume, no hook",
			st:   state{synced: true, restored: 90}, local: healthy,
			world: []worldOpt{leaderIs(me, 90, myLease), primaryIs(me, 90)},
			want:  []action{{kind: actResume, epoch: 90}},
		},
		{
			name: "a late watch event shows my winning key of a given-up epoch: delete it, never promote",
			st:   state{synced: true, givenUp: 100}, local: healthy,
			world:    []worldOpt{leaderIs(me, 100, myLease)},
			want:     []action{{kind: actDeleteKeys, epoch: 100}},
			wantWake: retryWake,
		},
		{
			name: "my key of a term not given up and never recorded: promote it",
			st:   state{synced: true, givenUp: 90}, local: healthy,
			world: []worldOpt{leaderIs(me, 100, myLease)},
			want:  []action{{kind: actPromote, epoch: 100, reason: "resumed leadership"}},
		},
		{
			name: "a failed demote hook is retried before anything else",
			st:   state{synced: true, demoteDue: "check failed", epoch: 100}, local: healthy,
			world: []worldOpt{standby("h2", passing, 0)},
			want:  []action{{kind: actDemote, epoch: 100, reason: "check failed"}},
		},
		{
			name: "world not read from etcd yet: decide nothing",
			st:   state{}, local: healthy,
			wantWake: retryWake,
		},
		{
			name: "paused standby never campaigns",
			st:   state{synced: true}, local: healthy,
			world:    []worldOpt{control(&pb.Control{Paused: true})},
			wantWake: time.Second,
		},
		{
			name: "unhealthy standby never campaigns",
			st:   state{synced: true}, local: failing,
			wantWake: time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld("db")
			w.rev = 1000
			for _, o := range tt.world {
				o(w)
			}
			maxLag := tt.maxLag
			if maxLag == 0 {
				maxLag = -1
			}
			fp := tt.fencePoint
			if fp.IsZero() {
				fp = fence
			}
			s := tt.st
			acts, wake := s.step(self{host: me, maxLag: maxLag, step: 100 * time.Millisecond},
				input{now: t0, w: w, local: tt.local, leaseID: myLease, fencePoint: fp})
			if len(acts) != len(tt.want) {
				t.Fatalf("actions = %+v; want %+v", acts, tt.want)
			}
			for i, got := range acts {
				want := tt.want[i]
				if got.kind != want.kind || want.epoch != 0 && got.epoch != want.epoch || want.event != 0 && got.event != want.event ||
					!strings.Contains(got.reason, want.reason) || got.force != want.force || got.switchover != want.switchover ||
					want.freshness != 0 && got.freshness != want.freshness {
					t.Errorf("action %d = %+v; want %+v", i, got, want)
				}
			}
			if len(tt.want) == 0 || tt.wantWake != 0 {
				if tt.wantWake != 0 && wake != tt.wantWake {
					t.Errorf("wake = %v; want %v", wake, tt.wantWake)
				}
			}
			if tt.after != nil {
				tt.after(t, s)
			}
		})
	}
}
