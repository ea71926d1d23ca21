package server

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// vouchClock drives a vouchTracker with one lease of ttl whose true expiry
// the test sets, answering polls as etcd would: whole seconds, truncated.
type vouchClock struct {
	t      *testing.T
	tr     *vouchTracker
	now    time.Time
	expiry time.Time
	term   uint64
}

const testLease = clientv3.LeaseID(7)

func newVouchClock(t *testing.T) *vouchClock {
	start := time.Unix(1000, 0)
	c := &vouchClock{t: t, tr: newVouchTracker(start, time.Second), now: start, term: 2}
	c.tr.observeTerm(c.term, start)
	return c
}

func (c *vouchClock) renew(ttl time.Duration) { c.expiry = c.now.Add(ttl) }

// poll advances the clock by 250ms and answers one poll of the lease.
func (c *vouchClock) poll() {
	c.now = c.now.Add(250 * time.Millisecond)
	left := int64(c.expiry.Sub(c.now.Add(time.Millisecond)) / time.Second)
	if c.expiry.Before(c.now) {
		left = -1
	}
	c.tr.observePoll(testLease, leasePoll{sent: c.now, answered: c.now.Add(2 * time.Millisecond), term: c.term, ttl: left, granted: 3})
}

func (c *vouchClock) want(what string, unconfirmed bool) {
	c.t.Helper()
	if got := c.tr.unconfirmed("pg", c.now); got != unconfirmed {
		c.t.Fatalf("%s: unconfirmed = %v at +%v, want %v", what, got, c.now.Sub(time.Unix(1000, 0)), unconfirmed)
	}
}

// A record read at start is unconfirmed until a renewal is seen, then
// stays confirmed while the agent renews every TTL/3, and turns
// unconfirmed once a renewal is missed, well before the lease expires.
func TestVouchTrackerRenewals(t *testing.T) {
	const ttl = 3 * time.Second
	c := newVouchClock(t)
	c.renew(ttl)
	c.tr.setPrimary("pg", testLease, false, c.now)
	c.want("read at start", true)
	lastRenew := c.now
	confirmedAt := time.Time{}
	for range 40 { // 10 s of a live agent
		if c.now.Sub(lastRenew) >= ttl/3 {
			c.renew(ttl)
			lastRenew = c.now
		}
		c.poll()
		u := c.tr.unconfirmed("pg", c.now)
		if !u && confirmedAt.IsZero() {
			confirmedAt = c.now
		}
		if u && !confirmedAt.IsZero() {
			t.Fatalf("live agent shown unconfirmed at +%v after confirmation at +%v", c.now.Sub(time.Unix(1000, 0)), confirmedAt.Sub(time.Unix(1000, 0)))
		}
	}
	if confirmedAt.IsZero() || confirmedAt.Sub(time.Unix(1000, 0)) > ttl {
		t.Fatalf("confirmed at %v, want within %v of start", confirmedAt, ttl)
	}
	// The agent stops renewing: unconfirmed once half the TTL is left.
	stopped := lastRenew
	for c.tr.unconfirmed("pg", c.now) == false {
		c.poll()
		if c.now.After(c.expiry) {
			t.Fatal("still confirmed when the lease expired")
		}
	}
	if left := c.expiry.Sub(c.now); left < ttl/2-500*time.Millisecond {
		t.Errorf("unconfirmed with %v left (stopped at %v), want about half the TTL", left, stopped)
	}
	// Renewing again confirms it.
	lastRenew = c.now
	c.renew(ttl)
	for range 8 {
		if c.now.Sub(lastRenew) >= ttl/3 {
			c.renew(ttl)
			lastRenew = c.now
		}
		c.poll()
	}
	c.want("renewing again", false)
}

// After a leader change every lease is refreshed by etcd: the jump proves
// nothing. A primary whose agent keeps renewing stays confirmed through the
// change while the renewals before it last, and is seen renewing again
// soon after it (a renewal right after a promotion lowers the refreshed
// expiry, which shows too); one whose agent stopped renewing at the change is
// marked by half the TTL after its last renewal, as without a change, and
// stays marked although etcd's refresh keeps its lease alive.
func TestVouchTrackerLeaderChange(t *testing.T) {
	const ttl = 3 * time.Second
	for _, renewing := range []bool{false, true} {
		c := newVouchClock(t)
		c.tr.setPrimary("pg", testLease, true, c.now) // written live: vouched at once
		c.renew(ttl)
		lastRenew := c.now
		step := func() {
			if c.now.Sub(lastRenew) >= ttl/3 {
				c.renew(ttl)
				lastRenew = c.now
			}
			c.poll()
		}
		for range 12 {
			step()
			c.want("live agent before the change", false)
		}
		// Leader change: etcd refreshes the lease by TTL + election timeout.
		c.now = c.now.Add(100 * time.Millisecond)
		c.term++
		c.expiry = c.now.Add(ttl + time.Second)
		markedBy := lastRenew.Add(ttl/2 + 500*time.Millisecond)
		marked := false
		change := c.now
		for range 40 {
			if renewing {
				step()
				if c.now.Sub(change) > ttl/2 {
					c.want("renewing agent after the change", false)
				}
				continue
			}
			c.poll()
			u := c.tr.unconfirmed("pg", c.now)
			if marked && !u {
				t.Fatalf("stopped agent confirmed again at +%v", c.now.Sub(time.Unix(1000, 0)))
			}
			marked = marked || u
			if !marked && c.now.After(markedBy) {
				t.Fatalf("stopped agent still confirmed %v after its last renewal", c.now.Sub(lastRenew))
			}
		}
	}
}

// A record without a lease, or whose lease is gone, is never vouched for;
// a write right after a leader change does not vouch either.
func TestVouchTrackerNoLease(t *testing.T) {
	c := newVouchClock(t)
	c.tr.setPrimary("pg", 0, true, c.now)
	c.want("no lease", true)
	c.tr.setPrimary("pg", testLease, true, c.now)
	c.want("lease written live", false)
	c.poll() // expiry is zero: the lease is gone
	c.want("lease gone", true)
	c.tr.removePrimary("pg")
	c.want("no record", false)

	c.tr.quorumBack(c.now)
	c.tr.setPrimary("pg", testLease, true, c.now.Add(100*time.Millisecond))
	c.want("written within the slack after quorum came back", true)
}
