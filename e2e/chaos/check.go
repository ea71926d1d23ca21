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
	// ErrTermsOverlap: two hosts accepted writes in overlapping terms: a
	// write of an older epoch was accepted after the first write of a newer
	// one (both hosts share one kernel clock in this suite).
	ErrTermsOverlap = errors.New("two primaries accepted writes in overlapping terms")
	// ErrEpochShared: writes of one epoch were accepted by two hosts.
	ErrEpochShared = errors.New("two hosts accepted writes of one epoch")
	// ErrAckLost: a write acknowledged to a writer is not in the log of the
	// host that acknowledged it.
	ErrAckLost = errors.New("an acknowledged write is missing from the primary's log")
	// ErrWatchOrder: a watcher saw primaries out of epoch order.
	ErrWatchOrder = errors.New("a watcher saw primaries out of order")
	// ErrWatchMissed: a watcher never saw a primary that etcd recorded.
	ErrWatchMissed = errors.New("a watcher missed a change of primary")
)

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

// check states every guarantee over a run's history.
func check(h *history) []violation {
	var out []violation
	out = append(out, checkTerms(h.writes)...)
	out = append(out, checkAcks(h.writes, h.acks)...)
	out = append(out, checkWatchers(h.sightings, h.truth)...)
	return out
}

// checkTerms: each epoch's writes come from one host, and every write of
// an older epoch was accepted before the first write of any newer one.
func checkTerms(writes []kvdemo.Write) []violation {
	type term struct {
		host        string
		first, last time.Time
	}
	terms := map[int64]*term{}
	var out []violation
	for _, w := range writes {
		t := terms[w.Epoch]
		if t == nil {
			terms[w.Epoch] = &term{host: w.Host, first: w.AcceptedAt, last: w.AcceptedAt}
			continue
		}
		if t.host != w.Host {
			out = append(out, violation{w.AcceptedAt, fmt.Errorf("%w: epoch %d on %s and %s", ErrEpochShared, w.Epoch, t.host, w.Host)})
		}
		if w.AcceptedAt.Before(t.first) {
			t.first = w.AcceptedAt
		}
		if w.AcceptedAt.After(t.last) {
			t.last = w.AcceptedAt
		}
	}
	epochs := make([]int64, 0, len(terms))
	for e := range terms {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	var latest int64 // the epoch whose term ended last so far
	for _, e := range epochs {
		t := terms[e]
		if p := terms[latest]; latest != 0 && !p.last.Before(t.first) {
			out = append(out, violation{t.first, fmt.Errorf("%w: epoch %d on %s wrote until %s, epoch %d on %s from %s",
				ErrTermsOverlap, latest, p.host, p.last.Format(time.StampMicro), e, t.host, t.first.Format(time.StampMicro))})
		}
		if latest == 0 || t.last.After(terms[latest].last) {
			latest = e
		}
	}
	return out
}

// checkAcks: every acknowledged write is in the log of the host that
// acknowledged it, with the epoch it was sent with.
func checkAcks(writes []kvdemo.Write, acks []Ack) []violation {
	type id struct {
		writer string
		seq    int64
	}
	logged := map[id]kvdemo.Write{}
	for _, w := range writes {
		logged[id{w.Writer, w.Seq}] = w
	}
	var out []violation
	for _, a := range acks {
		w, ok := logged[id{a.Writer, a.Seq}]
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
