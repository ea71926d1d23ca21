package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-dev/understudy/e2e/kvdemo"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// The guarantees a run checks, one named error each.
var (
	// ErrAckedTermsOverlap: two hosts acknowledged writes in overlapping
	// terms, which a client could observe: a write of an older epoch was
	// accepted, and acknowledged, after the first acknowledged write of a
	// newer one (times are the servers' accepted_at; every host shares one
	// kernel clock in this suite).
	ErrAckedTermsOverlap = errors.New("two primaries acknowledged writes in overlapping terms")
	// ErrTermsOverlap: two hosts logged writes in overlapping terms: a
	// write of an older epoch was accepted after the first write of a newer
	// one, acknowledged or not. In noask mode, unacknowledged such writes
	// during a host freeze are counted as diverged instead (see
	// divergedExempt).
	ErrTermsOverlap = errors.New("two primaries logged writes in overlapping terms")
	// ErrEpochShared: writes of one epoch were accepted by two hosts.
	ErrEpochShared = errors.New("two hosts accepted writes of one epoch")
	// ErrAckLost: a write acknowledged to a writer is not in the log of the
	// host that acknowledged it.
	ErrAckLost = errors.New("an acknowledged write is missing from the primary's log")
	// ErrWatchOrder: a watcher saw primaries out of epoch order.
	ErrWatchOrder = errors.New("a watcher saw primaries out of order")
	// ErrWatchMissed: a watcher never saw a primary that etcd recorded.
	ErrWatchMissed = errors.New("a watcher missed a change of primary")
	// ErrStrayPrimary (noask mode): after a round healed, a database that
	// is not the registry's primary still acted as primary, and so would
	// take the writes of any client that reached it. The runner demotes it
	// by hand so that later rounds test something.
	ErrStrayPrimary = errors.New("a database the registry no longer names primary still takes writes")
	// ErrRoleNotKept: the only healthy primary lost its role, or writes
	// stopped for longer than the fault was held, when no standby could
	// take over (slow-check).
	ErrRoleNotKept = errors.New("the only healthy primary did not keep its role")
)

// divergedExempt says why late, unacknowledged writes of a superseded term
// are tolerated in noask mode during a host freeze, and only then.
//
// docker pause freezes a whole host: the database together with its agent,
// the agent's guard and everything else that could demote it. On thaw they
// all run again at once, and the database may take a request that sat in
// its socket buffer (its client gave up on it long ago) before anything on
// that host can run the demote hook. A real PostgreSQL whose VM was
// suspended does the same. Such a write was never acknowledged, so no
// client saw two primaries; it is what a rejoining old primary must rewind
// (pg_rewind). The checker counts these writes per round as "diverged".
// Any other fault leaves something on the host running that can demote the
// database in time, so a late write there, acknowledged or not, is a
// violation; and an acknowledged late write is one in every kind.

// history is everything recorded during a run.
type history struct {
	writes    []kvdemo.Write        // every database host's log, merged
	acks      []Ack                 // what writers were told
	sightings map[string][]Sighting // per watcher
	truth     []int64               // epochs of db's primary records in etcd, in order
}

func (rn *runner) collect(ctx context.Context, startRev int64) (*history, error) {
	h := &history{sightings: map[string][]Sighting{}}
	for _, host := range rn.cfg.Cluster.Hosts {
		if !host.DB {
			continue
		}
		ws, err := rn.cfg.Cluster.KVLog(ctx, host)
		if err != nil {
			return nil, err
		}
		h.writes = append(h.writes, ws...)
	}
	for _, w := range rn.writers {
		h.acks = append(h.acks, w.acksSince(time.Time{})...)
	}
	for _, w := range rn.watchers {
		h.sightings[w.name] = w.sightings()
	}
	truth, err := primaryHistory(ctx, rn.etcd, startRev)
	if err != nil {
		return nil, err
	}
	h.truth = truth
	return h, nil
}

// primaryHistory reads from etcd every primary record db had from startRev
// on: the epochs a watcher must have seen, in order.
func primaryHistory(ctx context.Context, cli *clientv3.Client, startRev int64) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	key := registry.PrimaryKey(dbService)
	now, err := cli.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	var epochs []int64
	add := func(v []byte) error {
		var p pb.Primary
		if err := registry.Decode(v, &p); err != nil {
			return err
		}
		if n := len(epochs); n == 0 || epochs[n-1] != p.GetEpoch() {
			epochs = append(epochs, p.GetEpoch())
		}
		return nil
	}
	then, err := cli.Get(ctx, key, clientv3.WithRev(startRev))
	if err != nil {
		return nil, fmt.Errorf("primary at revision %d: %w", startRev, err)
	}
	for _, kv := range then.Kvs {
		if err := add(kv.Value); err != nil {
			return nil, err
		}
	}
	if now.Header.Revision <= startRev {
		return epochs, nil
	}
	// Read the key's changes up to now; a progress notification at or past
	// now says none are left.
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	wch := cli.Watch(wctx, key, clientv3.WithRev(startRev+1))
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			_ = cli.RequestProgress(wctx)
			continue
		case resp, ok := <-wch:
			if !ok {
				return nil, fmt.Errorf("history of %s: %w", key, ctx.Err())
			}
			if err := resp.Err(); err != nil {
				return nil, fmt.Errorf("history of %s: %w", key, err)
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision > now.Header.Revision {
					return epochs, nil
				}
				if ev.Type == clientv3.EventTypePut {
					if err := add(ev.Kv.Value); err != nil {
						return nil, err
					}
				}
			}
			if resp.IsProgressNotify() && resp.Header.Revision >= now.Header.Revision {
				return epochs, nil
			}
		}
	}
}

// violation is a broken guarantee, at the time it happened.
type violation struct {
	at  time.Time
	err error
}

// check states every guarantee over a run's history. mayDiverge says
// whether a late, unacknowledged write accepted at a time is tolerated
// (divergedExempt); those writes' times come back as diverged.
func check(h *history, mayDiverge func(time.Time) bool) (out []violation, diverged []time.Time) {
	out, diverged = checkTerms(h.writes, h.acks, mayDiverge)
	out = append(out, checkAcks(h.writes, h.acks)...)
	out = append(out, checkWatchers(h.sightings, h.truth)...)
	return out, diverged
}

// checkTerms: each epoch's writes come from one host, and every write of
// an older epoch was accepted before the first write of any newer one:
// among acknowledged writes always, among all logged writes except those
// mayDiverge tolerates (returned as diverged).
func checkTerms(writes []kvdemo.Write, acks []Ack, mayDiverge func(time.Time) bool) (out []violation, diverged []time.Time) {
	hosts := map[int64]string{}
	for _, w := range writes {
		if h, ok := hosts[w.Epoch]; !ok {
			hosts[w.Epoch] = w.Host
		} else if h != w.Host {
			out = append(out, violation{w.AcceptedAt, fmt.Errorf("%w: epoch %d on %s and %s", ErrEpochShared, w.Epoch, h, w.Host)})
		}
	}
	acked := map[writeID]bool{}
	for _, a := range acks {
		acked[writeID{a.Writer, a.Seq}] = true
	}
	var ackedWrites []kvdemo.Write
	for _, w := range writes {
		if acked[writeID{w.Writer, w.Seq}] {
			ackedWrites = append(ackedWrites, w)
		}
	}
	for _, g := range group(lateWrites(ackedWrites)) {
		out = append(out, g.violation(ErrAckedTermsOverlap, "acknowledged"))
	}
	var counted []late
	for _, l := range lateWrites(writes) {
		if !acked[writeID{l.w.Writer, l.w.Seq}] && mayDiverge(l.w.AcceptedAt) {
			diverged = append(diverged, l.w.AcceptedAt)
			continue
		}
		counted = append(counted, l)
	}
	for _, g := range group(counted) {
		out = append(out, g.violation(ErrTermsOverlap, "logged"))
	}
	return out, diverged
}

type writeID struct {
	writer string
	seq    int64
}

// late is a write accepted at or after the first write of a newer epoch,
// or, grouped, every such write of one epoch.
type late struct {
	w     kvdemo.Write // the (first) late write
	n     int          // how many
	last  time.Time    // when the last one was accepted
	newer kvdemo.Write // the first write of the newer term it overlaps
}

func (l late) violation(err error, what string) violation {
	return violation{l.w.AcceptedAt, fmt.Errorf("%w: epoch %d on %s %s %d writes from %s to %s, after epoch %d on %s began at %s",
		err, l.w.Epoch, l.w.Host, what, l.n, l.w.AcceptedAt.Format(time.StampMicro), l.last.Format(time.StampMicro),
		l.newer.Epoch, l.newer.Host, l.newer.AcceptedAt.Format(time.StampMicro))}
}

// lateWrites returns every write of writes accepted at or after the first
// write of a newer epoch among writes, one entry a write.
func lateWrites(writes []kvdemo.Write) []late {
	firsts := firstByEpoch(writes)
	var out []late
	for _, w := range writes {
		if nw, ok := firsts.newerBefore(w); ok {
			out = append(out, late{w: w, n: 1, last: w.AcceptedAt, newer: nw})
		}
	}
	return out
}

// group sums late writes up by epoch, in epoch order.
func group(ls []late) []late {
	byEpoch := map[int64]*late{}
	for _, l := range ls {
		g := byEpoch[l.w.Epoch]
		if g == nil {
			byEpoch[l.w.Epoch] = &late{w: l.w, n: l.n, last: l.last, newer: l.newer}
			continue
		}
		g.n += l.n
		if l.w.AcceptedAt.Before(g.w.AcceptedAt) {
			g.w, g.newer = l.w, l.newer
		}
		if l.last.After(g.last) {
			g.last = l.last
		}
	}
	epochs := make([]int64, 0, len(byEpoch))
	for e := range byEpoch {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	out := make([]late, 0, len(epochs))
	for _, e := range epochs {
		out = append(out, *byEpoch[e])
	}
	return out
}

// firsts holds each epoch's first write, and for each epoch the earliest
// first write of any newer epoch.
type firsts struct {
	newer map[int64]kvdemo.Write
}

func firstByEpoch(writes []kvdemo.Write) firsts {
	first := map[int64]kvdemo.Write{}
	for _, w := range writes {
		if f, ok := first[w.Epoch]; !ok || w.AcceptedAt.Before(f.AcceptedAt) {
			first[w.Epoch] = w
		}
	}
	epochs := make([]int64, 0, len(first))
	for e := range first {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	f := firsts{newer: map[int64]kvdemo.Write{}}
	var best kvdemo.Write
	for i := len(epochs) - 1; i >= 0; i-- {
		e := epochs[i]
		if best.Epoch != 0 {
			f.newer[e] = best
		}
		if w := first[e]; best.Epoch == 0 || w.AcceptedAt.Before(best.AcceptedAt) {
			best = w
		}
	}
	return f
}

// newerBefore returns the earliest first write of an epoch newer than w's,
// if it came at or before w.
func (f firsts) newerBefore(w kvdemo.Write) (kvdemo.Write, bool) {
	nw, ok := f.newer[w.Epoch]
	if !ok || w.AcceptedAt.Before(nw.AcceptedAt) {
		return kvdemo.Write{}, false
	}
	return nw, true
}

// checkAcks: every acknowledged write is in the log of the host that
// acknowledged it, with the epoch it was sent with.
func checkAcks(writes []kvdemo.Write, acks []Ack) []violation {
	logged := map[writeID]kvdemo.Write{}
	for _, w := range writes {
		logged[writeID{w.Writer, w.Seq}] = w
	}
	var out []violation
	for _, a := range acks {
		w, ok := logged[writeID{a.Writer, a.Seq}]
		if !ok || w.Host != a.Host || w.Epoch != a.Epoch {
			out = append(out, violation{a.At, fmt.Errorf("%w: %s #%d acknowledged by %s at epoch %d", ErrAckLost, a.Writer, a.Seq, a.Host, a.Epoch)})
		}
	}
	return out
}

// checkWatchers: each watcher saw primaries in increasing epoch order, and
// every primary etcd recorded after the watcher's first sighting.
func checkWatchers(sightings map[string][]Sighting, truth []int64) []violation {
	var out []violation
	for name, seen := range sightings {
		for i := 1; i < len(seen); i++ {
			if seen[i].Epoch <= seen[i-1].Epoch {
				out = append(out, violation{seen[i].At, fmt.Errorf("%w: %s saw epoch %d after %d", ErrWatchOrder, name, seen[i].Epoch, seen[i-1].Epoch)})
			}
		}
		if len(seen) == 0 {
			out = append(out, violation{time.Time{}, fmt.Errorf("%w: %s saw no primary at all", ErrWatchMissed, name)})
			continue
		}
		got := map[int64]bool{}
		for _, s := range seen {
			got[s.Epoch] = true
		}
		for _, e := range truth {
			if e >= seen[0].Epoch && !got[e] {
				out = append(out, violation{missedAt(seen, e), fmt.Errorf("%w: %s never saw epoch %d", ErrWatchMissed, name, e)})
			}
		}
	}
	return out
}

// missedAt dates a missed epoch by the sighting that came after it.
func missedAt(seen []Sighting, epoch int64) time.Time {
	for _, s := range seen {
		if s.Epoch > epoch {
			return s.At
		}
	}
	return seen[len(seen)-1].At
}
