package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// HubConfig tunes a Hub. The zero value is usable.
type HubConfig struct {
	// History is how many view changes are kept for subscribers that resume
	// from a revision; older resumes get a fresh snapshot. Default 4096.
	History int
	// ReadTimeout bounds each read of the whole keyspace. Default 2s.
	ReadTimeout time.Duration
	// RetryInterval is the pause between attempts to reach etcd while it is
	// unreachable. Default 500ms.
	RetryInterval time.Duration
	// ProbeInterval is how often the hub checks, with a small linearizable
	// read bounded by ProbeTimeout, that etcd still has a quorum while the
	// watch is quiet. Defaults 500ms and 1s.
	ProbeInterval, ProbeTimeout time.Duration
	Logger                      *slog.Logger
}

func (c *HubConfig) setDefaults() {
	if c.History <= 0 {
		c.History = 4096
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 2 * time.Second
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = 500 * time.Millisecond
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 500 * time.Millisecond
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Hub keeps the whole keyspace under registry.Prefix in memory, kept current
// by exactly one etcd watch however many subscribers it serves, and fans each
// changed view out to the subscribers that want it.
//
// While etcd cannot be reached with a quorum, the hub keeps serving the last
// state it knew, refreshed from serializable reads of the local member, with
// every view marked stale.
type Hub struct {
	cfg    HubConfig
	client *clientv3.Client
	log    *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
	ready  chan struct{} // closed after the first successful read

	mu          sync.RWMutex
	state       *registry.State
	modRevs     map[string]int64    // key → mod revision, to diff after a re-read
	views       map[string]*pb.View // published views (stale-marked while stale)
	stale       bool
	history     []change // changes in revision order, at most cfg.History
	historyFrom int64    // every change after this revision is in history
	subs        map[*Subscription]struct{}
	stopped     bool
}

type change struct {
	rev  int64
	view *pb.View
}

// NewHub starts a hub reading through client. It returns at once; Ready
// reports when the first read of the keyspace is done. Stop ends it.
func NewHub(client *clientv3.Client, cfg HubConfig) *Hub {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		cfg:     cfg,
		client:  client,
		log:     cfg.Logger,
		cancel:  cancel,
		done:    make(chan struct{}),
		ready:   make(chan struct{}),
		state:   registry.NewState(),
		modRevs: map[string]int64{},
		views:   map[string]*pb.View{},
		subs:    map[*Subscription]struct{}{},
	}
	go h.run(ctx)
	return h
}

// Ready is closed once the hub has read the keyspace for the first time.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Stop ends the watch and closes every subscription. Safe to call more than once.
func (h *Hub) Stop() {
	h.cancel()
	<-h.done
	h.mu.Lock()
	h.stopped = true
	subs := h.subs
	h.subs = map[*Subscription]struct{}{}
	h.mu.Unlock()
	for s := range subs {
		s.close()
	}
	metricSubscribers.Sub(float64(len(subs)))
}

// run owns the etcd watch: read everything, watch from the next revision,
// and read again whenever the watch breaks (leader lost, compaction, member
// down).
func (h *Hub) run(ctx context.Context) {
	defer close(h.done)
	for ctx.Err() == nil {
		rev, err := h.resync(ctx)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("registry: cannot read etcd with a quorum; serving last known views as stale", "err", err)
				h.refreshStale(ctx)
				sleepCtx(ctx, h.cfg.RetryInterval)
			}
			continue
		}
		err = h.watch(ctx, rev)
		if ctx.Err() == nil {
			h.log.Info("registry: etcd watch ended; reading the keyspace again", "err", err)
			if errors.Is(err, errNoQuorum) {
				// Say so now: the read below can take its whole timeout on
				// a member without a leader.
				h.setStale()
				h.refreshStale(ctx)
			}
		}
	}
}

// resync reads the keyspace with a linearizable read and applies the
// difference to what the hub holds. It returns the revision read.
func (h *Hub) resync(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, h.cfg.ReadTimeout)
	defer cancel()
	resp, err := h.client.Get(rctx, registry.Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	h.applySnapshot(resp.Kvs, resp.Header.Revision, false)
	return resp.Header.Revision, nil
}

// refreshStale reads the local member without a quorum so that the stale
// views are as recent as the member knows, then marks everything stale.
func (h *Hub) refreshStale(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, h.cfg.ReadTimeout)
	defer cancel()
	resp, err := h.client.Get(rctx, registry.Prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		h.setStale()
		return
	}
	h.applySnapshot(resp.Kvs, resp.Header.Revision, true)
}

// errNoQuorum: the quorum probe failed while the watch was open.
var errNoQuorum = errors.New("etcd quorum probe failed")

func (h *Hub) watch(ctx context.Context, rev int64) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	wg.Go(func() { h.probeQuorum(wctx, cancel) })
	wch := h.client.Watch(wctx, registry.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.Canceled {
			return errors.New("watch canceled")
		}
		h.applyEvents(resp.Events, resp.Header.Revision)
	}
	if cause := context.Cause(wctx); errors.Is(cause, errNoQuorum) {
		return cause
	}
	return ctx.Err()
}

// probeQuorum ends the watch when a small linearizable read fails. A member
// that loses its leader ends require-leader watches only after three
// election timeouts, and a busy one has been seen to take half a minute,
// while its clients keep trusting views that are no longer current.
func (h *Hub) probeQuorum(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(h.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, done := context.WithTimeout(ctx, h.cfg.ProbeTimeout)
		_, err := h.client.Get(pctx, registry.MembersPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		done()
		if err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("%w: %w", errNoQuorum, err))
			return
		}
	}
}

func (h *Hub) applyEvents(events []*clientv3.Event, headerRev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := map[string]*pb.View{}
	for _, ev := range events {
		key := string(ev.Kv.Key)
		var value []byte
		if ev.Type == mvccpb.PUT {
			value = nonNil(ev.Kv.Value)
			h.modRevs[key] = ev.Kv.ModRevision
		} else {
			delete(h.modRevs, key)
		}
		h.apply(key, value, ev.Kv.ModRevision, changed)
	}
	h.state.SetRevision(headerRev)
	h.publish(changed, h.stale)
}

// applySnapshot brings the state to a full read at rev: keys that vanished
// are deleted, new or changed keys are put.
func (h *Hub) applySnapshot(kvs []*mvccpb.KeyValue, rev int64, stale bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := map[string]*pb.View{}
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		key := string(kv.Key)
		seen[key] = true
		if h.modRevs[key] == kv.ModRevision {
			continue
		}
		h.modRevs[key] = kv.ModRevision
		h.apply(key, nonNil(kv.Value), kv.ModRevision, changed)
	}
	for key := range h.modRevs {
		if !seen[key] {
			delete(h.modRevs, key)
			h.apply(key, nil, rev, changed)
		}
	}
	h.state.SetRevision(rev)
	first := false
	select {
	case <-h.ready:
	default:
		first = true
		h.historyFrom = h.state.Revision()
	}
	h.publish(changed, stale)
	if first {
		close(h.ready)
	}
}

func (h *Hub) apply(key string, value []byte, rev int64, changed map[string]*pb.View) {
	v, err := h.state.Apply(key, value, rev)
	if err != nil {
		metricBadKeys.Inc()
		h.log.Warn("registry: skipping a record it cannot read", "key", key, "revision", rev, "err", err)
	}
	if v != nil {
		changed[v.GetService()] = v
	}
}

// publish records changed views and pushes them to subscribers. When the
// stale mark flips, every view is published again with the new mark.
func (h *Hub) publish(changed map[string]*pb.View, stale bool) {
	flip := stale != h.stale
	h.stale = stale
	metricStale.Set(b2f(stale))
	metricRevision.Set(float64(h.state.Revision()))
	batch := make([]*pb.View, 0, len(changed))
	for name, v := range changed {
		m := h.mark(v)
		if len(v.GetInstances()) == 0 && v.GetPrimary() == nil {
			delete(h.views, name)
		} else {
			h.views[name] = m
		}
		h.record(change{rev: v.GetRevision(), view: m})
		batch = append(batch, m)
	}
	if flip {
		h.log.Info("registry: stale mark changed", "stale", stale)
		for name := range h.views {
			if changed[name] == nil {
				m := h.mark(h.state.View(name))
				h.views[name] = m
				batch = append(batch, m)
			}
		}
	}
	if len(batch) == 0 {
		return
	}
	metricViewChanges.Add(float64(len(changed)))
	for s := range h.subs {
		s.push(batch, h.state.Revision(), flip)
	}
}

// mark returns v with the hub's current stale mark, copying only if needed.
func (h *Hub) mark(v *pb.View) *pb.View {
	if v.GetStale() == h.stale {
		return v
	}
	c := proto.CloneOf(v)
	c.Stale = h.stale
	return c
}

func (h *Hub) setStale() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.publish(nil, true)
}

func (h *Hub) record(c change) {
	h.history = append(h.history, c)
	if over := len(h.history) - h.cfg.History; over > 0 {
		h.historyFrom = max(h.historyFrom, h.history[over-1].rev)
		h.history = append(h.history[:0], h.history[over:]...)
	}
}

// Subscribe registers a subscriber for services (all when empty) and returns
// its first message: a full snapshot, or, when fromRev > 0 and the hub still
// knows every change since fromRev, the views changed after it. It waits for
// the hub's first read of the keyspace, at most until ctx is done.
func (h *Hub) Subscribe(ctx context.Context, services []string, fromRev int64) (*Subscription, *pb.WatchResponse, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
	}
	s := &Subscription{hub: h, pending: map[string]*pb.View{}, notify: make(chan struct{}, 1)}
	if len(services) > 0 {
		s.filter = map[string]bool{}
		for _, name := range services {
			s.filter[name] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil, nil, ErrStopped
	}
	rev := h.state.Revision()
	first := &pb.WatchResponse{Revision: rev}
	// A stale hub sends a full snapshot even to a resuming subscriber: the
	// history says what changed, not that the views are now stale.
	if fromRev > 0 && fromRev >= h.historyFrom && !h.stale {
		s.minRev = fromRev
		// The subscriber knows everything up to fromRev: send the current
		// view of each service changed since, or its removal.
		latest := map[string]*pb.View{}
		for _, c := range h.history {
			name := c.view.GetService()
			if c.rev > fromRev && s.wants(name) {
				latest[name] = cmp.Or(h.views[name], c.view)
			}
		}
		first.Views = sortViews(slices.Collect(maps.Values(latest)))
	} else {
		first.Snapshot = true
		for _, name := range h.state.Services() {
			if s.wants(name) {
				first.Views = append(first.Views, h.views[name])
			}
		}
	}
	s.rev = rev
	h.subs[s] = struct{}{}
	metricSubscribers.Inc()
	return s, first, nil
}

func (h *Hub) unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		metricSubscribers.Dec()
	}
}

// View returns the current view of a service, or nil when it is unknown.
func (h *Hub) View(service string) *pb.View {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.views[service]
}

// Views returns every current view, sorted by service, and the revision.
func (h *Hub) Views() ([]*pb.View, int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*pb.View, 0, len(h.views))
	for _, name := range h.state.Services() {
		out = append(out, h.views[name])
	}
	return out, h.state.Revision()
}

// Hosts returns the hosts with a live agent and the member records.
func (h *Hub) Hosts() []*pb.Host {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.state.Hosts()
}

// Member returns what a server recorded about an etcd member, or nil.
func (h *Hub) Member(name string) *pb.Member {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.state.Member(name)
}

// Stale reports whether the hub is serving its last known state because
// etcd cannot be read with a quorum.
func (h *Hub) Stale() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.stale
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
