package server

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// vouchTracker decides, for each primary record, whether anybody vouches
// for its term right now: whether the agent that wrote it is seen renewing
// the lease the record is bound to. It is pure bookkeeping, fed by the hub
// with what it reads (lease polls, raft terms, writes, the quorum coming
// back) and the time; the hub does the I/O.
//
// What etcd does, read in go.etcd.io/etcd/server/v3 v3.7.3:
//
//   - lease/lessor.go Promote: a member that becomes leader refreshes every
//     lease, expiry = now + extend + remaining TTL, where extend is the
//     election timeout (etcdserver/server.go, applyEntryNormal, on the first
//     empty entry of the term) and the remaining TTL is the whole granted
//     TTL unless a checkpoint saved a smaller one. A lease nobody renews
//     thus lives a whole TTL (and more) past every leader change: that is
//     what left a fenced primary READ_WRITE for seconds after a quorum loss.
//     A renewal sets expiry = now + TTL, which right after a promotion can
//     be less than the refreshed expiry: expiries are not monotonic across
//     a leader change.
//   - etcdserver/v3_server.go leaseTimeToLive: answered by the leader only
//     (a follower forwards it over the peer port), so it needs a leader; it
//     returns ErrLeaderChanged rather than an answer from a leader whose
//     lessor is not promoted yet. TTL is int64(Remaining().Seconds()):
//     whole seconds, truncated. A lease that does not exist answers TTL -1
//     (v3rpc turns ErrLeaseNotFound into that). The response header is
//     filled by the member the client talks to, with its raft term.
//
// So every answer carries a term, and an answer with a term no higher than
// an earlier one's comes from a leader already promoted in that term: a
// rise of the lease's expiry between two such answers is a keepalive. The
// tracker therefore starts over whenever it sees a higher term or the hub's
// quorum come back, and from then on uses only polls sent after that
// instant to see renewals. Until it sees one, what the renewals seen before
// the change proved still holds, and no longer: the agent renewed its lease
// up to then, and it fences itself once it cannot renew (DESIGN, election
// step 5), so its primary is vouched for until half the TTL is left of the
// expiry those renewals gave, never of the expiry etcd's refresh gave. One
// whose agent stopped is thus marked as if no change had happened. A live
// primary can still be marked for a moment: nobody renews while the leader
// moves, and the first renewal under the new leader, often sent the moment
// it is promoted, may come before any poll of the new term to compare it
// with, so only the next one (TTL/3 later for an agent) proves it. The
// mark then lasts from TTL/2 after the last renewal seen before the move
// to about TTL/3 after the move plus two polls: with the leader moved
// promptly, less than TTL/2 (registry/client TestSwitchesServerWhenItStops
// holds it to that).
//
// Expiry bounds: a poll sent at s, answered at r with n whole seconds left,
// says the lease expires in [s+n, r+n+1). The lower bounds give the least
// remaining TTL (rule a); a lower bound above an earlier upper bound proves
// a renewal in between (rule b), whatever the poll timing and the
// truncation to seconds. So does an upper bound below an earlier lower
// bound: only a renewal lowers an expiry, which happens when an agent
// renews within the election timeout after a promotion.
type vouchTracker struct {
	// slack: a write of a primary record seen within slack after a leader
	// change may be an entry of the old term committed late, and vouches
	// for nothing.
	slack     time.Duration
	changedAt time.Time // last leader change or quorum return; zero: none since start
	start     time.Time
	term      uint64
	leases    map[clientv3.LeaseID]*leaseVouch
	primaries map[string]clientv3.LeaseID // service → lease of its primary record; 0: none
}

type leaseVouch struct {
	since   time.Time     // polls sent before this are ignored
	granted time.Duration // the lease's granted TTL, from the last poll
	polled  bool          // a poll since `since` answered
	lo      time.Time     // greatest lower bound of the expiry seen since `since`
	refHi   time.Time     // least upper bound of the expiry seen since `since`
	refLo   time.Time     // greatest lower bound of the expiry seen since `since`, up to the last renewal seen
	renewed bool          // a renewal, or a write under the lease, seen since `since`
	wroteAt time.Time     // when a write vouched for the lease (before any poll)
	gone    bool          // etcd says the lease does not exist
	// carried is the lower bound of the expiry that renewals seen before
	// the last change gave; zero when none were seen.
	carried time.Time
}

func newVouchTracker(start time.Time, slack time.Duration) *vouchTracker {
	return &vouchTracker{
		slack:     slack,
		start:     start,
		leases:    map[clientv3.LeaseID]*leaseVouch{},
		primaries: map[string]clientv3.LeaseID{},
	}
}

// since is the instant from which polls count: the last leader change or
// quorum return, or the tracker's start.
func (t *vouchTracker) since() time.Time {
	if t.changedAt.IsZero() {
		return t.start
	}
	return t.changedAt
}

// observeTerm records a raft term from a response received at `at`. It
// reports whether the term is higher than one seen before: a leader change,
// after which nothing is vouched for until renewals are seen again.
func (t *vouchTracker) observeTerm(term uint64, at time.Time) bool {
	if term <= t.term {
		return false
	}
	first := t.term == 0
	t.term = term
	if first {
		return false // the start already counts as a change
	}
	t.reset(at)
	return true
}

// quorumBack records that etcd answered with a quorum again after the hub
// could not reach one.
func (t *vouchTracker) quorumBack(at time.Time) { t.reset(at) }

func (t *vouchTracker) reset(at time.Time) {
	t.changedAt = at
	for id, l := range t.leases {
		carried := l.carried // a change before any renewal was seen keeps the earlier bound
		if l.renewed && l.polled {
			carried = l.lo
		}
		t.leases[id] = &leaseVouch{since: at, granted: l.granted, carried: carried, gone: l.gone}
	}
}

// setPrimary records that service's primary record is bound to lease (0:
// no lease). written says the hub saw the record written through its watch
// at `at`, as opposed to reading it in a full read: the agent's write under
// its lease vouches for the lease, unless it came right after a leader
// change.
func (t *vouchTracker) setPrimary(service string, lease clientv3.LeaseID, written bool, at time.Time) {
	if old, ok := t.primaries[service]; ok && old != lease {
		t.removePrimary(service)
	}
	t.primaries[service] = lease
	if lease == 0 {
		return
	}
	l := t.leases[lease]
	if l == nil {
		l = &leaseVouch{since: t.since()}
		t.leases[lease] = l
	}
	if written && !at.Before(t.changedAt.Add(t.slack)) && !l.renewed && !l.gone {
		l.renewed, l.wroteAt = true, at
	}
}

// removePrimary forgets service's primary record, and its lease when no
// other record uses it.
func (t *vouchTracker) removePrimary(service string) {
	lease, ok := t.primaries[service]
	if !ok {
		return
	}
	delete(t.primaries, service)
	for _, other := range t.primaries {
		if other == lease {
			return
		}
	}
	delete(t.leases, lease)
}

// toPoll returns the leases to poll.
func (t *vouchTracker) toPoll() []clientv3.LeaseID {
	out := make([]clientv3.LeaseID, 0, len(t.leases))
	for id := range t.leases {
		out = append(out, id)
	}
	return out
}

// leasePoll is one LeaseTimeToLive answer: sent and answered at those
// instants, with the member's raft term, ttl whole seconds left (-1: no
// such lease) of granted.
type leasePoll struct {
	sent, answered time.Time
	term           uint64
	ttl, granted   int64
}

// observePoll takes in one answer. It reports whether the answer's term was
// a leader change (see observeTerm).
func (t *vouchTracker) observePoll(id clientv3.LeaseID, p leasePoll) bool {
	changed := t.observeTerm(p.term, p.answered)
	l := t.leases[id]
	if l == nil || p.term < t.term || p.sent.Before(l.since) {
		return changed // forgotten, from a lagging member, or from before a change
	}
	if p.ttl < 0 {
		l.gone = true
		return changed
	}
	l.granted = time.Duration(p.granted) * time.Second
	lo := p.sent.Add(time.Duration(p.ttl) * time.Second)
	hi := p.answered.Add(time.Duration(p.ttl+1) * time.Second)
	switch {
	case l.polled && (lo.After(l.refHi) || hi.Before(l.refLo)):
		// The expiry moved: a renewal. Bounds start over from this
		// answer, as the expiry may have gone down.
		l.renewed = true
		l.refHi, l.refLo, l.lo = hi, lo, lo
	case !l.polled:
		l.refHi, l.refLo, l.lo = hi, lo, lo
	default:
		if hi.Before(l.refHi) {
			l.refHi = hi
		}
		if lo.After(l.refLo) {
			l.refLo, l.lo = lo, lo
		}
	}
	l.polled = true
	return changed
}

// unconfirmed reports whether nobody vouches for the term of service's
// primary at now:
//
//	(c) its record has no lease, or etcd says the lease is gone; or
//	(b) no renewal of the lease (nor write under it) has been seen since the
//	    last leader change, quorum return or the tracker's start, and the
//	    renewals seen before it (if any) leave less than half the TTL; or
//	(a) the least remaining TTL the polls allow is below half the granted
//	    TTL: an agent renewing every TTL/3 has missed a renewal. With no
//	    answered poll yet, a write vouches for one slack at most.
//
// A service without a primary record is not unconfirmed.
func (t *vouchTracker) unconfirmed(service string, now time.Time) bool {
	lease, ok := t.primaries[service]
	if !ok {
		return false
	}
	l := t.leases[lease]
	switch {
	case lease == 0 || l == nil || l.gone:
		return true
	case !l.renewed:
		return l.carried.IsZero() || l.carried.Sub(now) < l.granted/2
	case !l.polled:
		return now.Sub(l.wroteAt) > t.slack
	default:
		return l.lo.Sub(now) < l.granted/2
	}
}

// services returns the services with a primary record.
func (t *vouchTracker) services() []string {
	out := make([]string, 0, len(t.primaries))
	for name := range t.primaries {
		out = append(out, name)
	}
	return out
}
