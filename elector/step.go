package elector

import (
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// This file is the elector's decision core: a pure function of what the
// host knows (the world as etcd showed it, the local instance, the clock,
// the fence point) that says what to do next. It does no I/O; Run carries
// the actions out and reports their results back into the state. Every
// row of the design's failure table is a table test of step.

// actKind says what an action does.
type actKind int

const (
	// actCampaign races for the leader key (create-if-absent under the lease).
	actCampaign actKind = iota + 1
	// actPromote arms the guard, runs the promote hook for epoch and
	// records the primary: the leader key of epoch is ours but nothing acts on it.
	actPromote
	// actResume acts again on a term whose primary record is ours: an agent
	// restarted within the TTL and resumed its lease.
	actResume
	// actDemote runs the demote hook; the keys are left alone (they are
	// gone, or etcd cannot be reached, or a later step deletes them).
	actDemote
	// actDeleteKeys deletes the leader and primary keys of a given-up epoch.
	actDeleteKeys
	// actWriteMark records the acting primary's freshness as the service's
	// durable high-water mark.
	actWriteMark
	// actEvent records an event without any change of role.
	actEvent
)

// action is one thing step decides.
type action struct {
	kind   actKind
	epoch  int64
	reason string
	// event is the kind recorded by actDemote and actEvent.
	event pb.EventKind
	// previous primary (actPromote), switchover and force (actCampaign).
	previous          string
	switchover, force bool
	freshness         int64 // actWriteMark
}

// self is this host's fixed part in the election.
type self struct {
	host     string
	priority int32
	maxLag   int64 // < 0: no limit
	step     time.Duration
}

// input is everything one decision looks at.
type input struct {
	now     time.Time
	w       *world
	local   Local
	leaseID clientv3.LeaseID
	// fencePoint is when an acting primary must have stopped acting: its
	// lease deadline less the fence margin, and never later than what the
	// guard has acknowledged.
	fencePoint time.Time
}

// state is what the elector remembers between decisions. step changes
// only its bookkeeping; Run records the outcome of each action.
type state struct {
	acting bool
	epoch  int64 // the current or last term this host acted in
	// givenUp is the highest epoch this host gave up (resigned, fenced,
	// failed to promote, found gone after a restart). A term at or below it
	// is never acted on again; while its leader key is still ours it is
	// deleted. It only grows: a late watch event showing our own winning key
	// of a given-up epoch can never look like a term to resume.
	givenUp int64
	// restored is the epoch a previous run of this agent held when it
	// stopped (state file). Unless that very term is still ours, the service
	// is demoted before anything else happens.
	restored int64
	// demoteDue is the reason of a demote hook that failed: it is retried,
	// and nothing else happens, until it succeeds.
	demoteDue   string
	demoteEvent pb.EventKind
	retryAt     time.Time

	synced      bool      // the world reflects etcd: read once and watched since
	absentSince time.Time // when the leader key was first seen absent
	cooldown    time.Time // no campaigning before this (after a failed promote)
	keptRole    bool      // a failed check with nobody to hand over to was reported
	blocked     bool      // "cannot take over: behind the high-water mark" was reported
	markWritten int64     // freshness last recorded as the high-water mark this term
}

// Wake-up periods.
const (
	idleWake  = time.Second
	retryWake = 250 * time.Millisecond
)

// step decides what to do now, and when to look again if nothing happens.
func (s *state) step(me self, in input) ([]action, time.Duration) {
	if s.demoteDue != "" {
		if in.now.Before(s.retryAt) {
			return nil, s.retryAt.Sub(in.now)
		}
		return []action{{kind: actDemote, epoch: s.epoch, reason: s.demoteDue, event: s.demoteEvent}}, 0
	}
	if s.acting {
		return s.stepPrimary(me, in)
	}
	return s.stepStandby(me, in)
}

// stepPrimary keeps or gives up the role of an acting primary.
func (s *state) stepPrimary(me self, in input) ([]action, time.Duration) {
	w, now := in.w, in.now
	if !now.Before(in.fencePoint) {
		return []action{{kind: actDemote, epoch: s.epoch, reason: "lease renewals stopped", event: pb.EventKind_EVENT_KIND_FENCED}}, 0
	}
	wake := min(in.fencePoint.Sub(now), idleWake)
	// Only a world in step with etcd can say the role is gone; while etcd
	// is unreachable, the fence point above is what stops this primary.
	// The world must also have caught up with the key this host created.
	if s.synced && w.rev >= s.epoch && (w.leader == nil || w.leaderEpoch != s.epoch) {
		return []action{{kind: actDemote, epoch: s.epoch, reason: "leadership lost", event: pb.EventKind_EVENT_KIND_DEMOTED}}, 0
	}
	var acts []action
	if f := in.local.Freshness; f > 0 && f != s.markWritten {
		acts = append(acts, action{kind: actWriteMark, epoch: s.epoch, freshness: f})
	}
	if w.control.GetPaused() {
		return acts, wake
	}
	if !in.local.Healthy && in.local.Checked {
		// Hand over only to someone who can take over: demoting the only
		// primary into nothing turns a slow check into an outage, and the
		// next host to come back might be one that lacks the latest writes.
		if w.takeoverPossible(me.host, in.local.Freshness, me.maxLag, "") {
			return []action{{kind: actDemote, epoch: s.epoch, reason: "check failed", event: pb.EventKind_EVENT_KIND_DEMOTED}}, 0
		}
		if !s.keptRole {
			s.keptRole = true
			acts = append(acts, action{kind: actEvent, epoch: s.epoch, event: pb.EventKind_EVENT_KIND_KEPT_ROLE,
				reason: "check failed, but no healthy eligible standby can take over: keeping the role, marked critical"})
		}
		return acts, wake
	}
	s.keptRole = false
	if sw, ok := w.switchover(now, switchoverMaxAge); ok && sw.from == me.host && sw.to != me.host {
		if w.takeoverPossible(me.host, in.local.Freshness, me.maxLag, sw.forcedTarget()) {
			return []action{{kind: actDemote, epoch: s.epoch, reason: "switchover", event: pb.EventKind_EVENT_KIND_DEMOTED}}, 0
		}
	}
	return acts, wake
}

// stepStandby campaigns when the role is free and this host may take it,
// and cleans up what an earlier term of this host left behind.
func (s *state) stepStandby(me self, in input) ([]action, time.Duration) {
	w, now := in.w, in.now
	if !s.synced {
		return nil, retryWake // decide nothing on a world etcd has not confirmed
	}
	mine := w.leader != nil && w.leader.GetHost() == me.host && w.leaderLease == in.leaseID
	if s.restored != 0 {
		r := s.restored
		s.restored = 0
		if !mine || w.leaderEpoch != r {
			return []action{{kind: actDemote, epoch: r, event: pb.EventKind_EVENT_KIND_DEMOTED,
				reason: fmt.Sprintf("restarted: the term it held before (epoch %d) is gone", r)}}, 0
		}
	}
	if mine && w.leaderEpoch <= s.givenUp {
		return []action{{kind: actDeleteKeys, epoch: w.leaderEpoch}}, retryWake
	}
	if mine {
		if p := w.primary; p != nil && p.GetHost() == me.host && p.GetEpoch() == w.leaderEpoch {
			return []action{{kind: actResume, epoch: w.leaderEpoch}}, 0
		}
		// Won, but the promotion never completed: a campaign whose answer
		// was lost, or a restart between winning and recording.
		return []action{{kind: actPromote, epoch: w.leaderEpoch, reason: "resumed leadership"}}, 0
	}
	if w.leader != nil {
		s.absentSince, s.blocked = time.Time{}, false
		return nil, idleWake
	}
	if w.control.GetPaused() {
		return nil, idleWake
	}
	if now.Before(s.cooldown) {
		return nil, s.cooldown.Sub(now)
	}
	var target string
	var excluded []string
	sw, switching := w.switchover(now, switchoverMaxAge)
	if switching {
		target = sw.to
		if sw.from != "" {
			excluded = []string{sw.from}
		}
	}
	force := switching && sw.force && target == me.host
	r := Rank(me.host, w.candidates(me.host, in.local, me.priority), w.highWater(), me.maxLag, target, excluded, force)
	if !r.Eligible {
		if r.Lagging && !s.blocked {
			s.blocked = true
			return []action{{kind: actEvent, event: pb.EventKind_EVENT_KIND_BLOCKED,
				reason: "cannot take over without an operator: " + r.Why}}, idleWake
		}
		return nil, idleWake
	}
	if s.absentSince.IsZero() {
		s.absentSince = now
	}
	if tryAt := s.absentSince.Add(time.Duration(r.Rank) * me.step); now.Before(tryAt) {
		return nil, tryAt.Sub(now)
	}
	return []action{{kind: actCampaign, switchover: switching, force: force}}, 0
}
