package resolver

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/resolver"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/client"
)

// Scheme is the URL scheme of understudy targets.
const Scheme = "understudy"

// builder builds resolvers that read one registry client.
type builder struct {
	c            *client.Client
	log          *slog.Logger
	readyTimeout time.Duration
}

// Option configures a builder.
type Option func(*builder)

// WithReadyTimeout sets how long a resolver waits for the registry
// client's first views before it tells the channel why there are none (the
// client's Err: the servers tried and the last error), so that
// calls fail fast with that reason rather than wait for their deadline. The
// first view clears it. Default 3s.
func WithReadyTimeout(d time.Duration) Option { return func(b *builder) { b.readyTimeout = d } }

// WithLogger sets the logger of address changes (at debug level). Default
// slog.Default().
func WithLogger(log *slog.Logger) Option { return func(b *builder) { b.log = log } }

// NewBuilder returns a gRPC resolver builder for the understudy scheme that
// reads c. Pass it to a channel with grpc.WithResolvers:
//
//	b := resolver.NewBuilder(c)
//	conn, err := grpc.NewClient("understudy:///postgres?role=primary", grpc.WithResolvers(b), ...)
//
// The builder does not own c: close c after the channels using it.
func NewBuilder(c *client.Client, opts ...Option) resolver.Builder {
	b := &builder{c: c, log: slog.Default(), readyTimeout: 3 * time.Second}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Scheme implements resolver.Builder.
func (b *builder) Scheme() string { return Scheme }

// Build implements resolver.Builder. It fails on a target it cannot parse
// (an unknown role, a malformed service name), naming it. It does not wait
// for the registry: the channel gets its first addresses when the client has
// the service's view.
func (b *builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := ParseTarget(target.URL)
	if err != nil {
		return nil, err
	}
	views, stop := b.c.Watch(t.Service)
	r := &watchResolver{target: t, cc: cc, stop: stop, log: b.log.With("target", target.String())}
	r.wg.Go(func() { r.run(b.c, views, b.readyTimeout) })
	return r, nil
}

// watchResolver pushes the addresses of every new view of one service to
// its channel.
type watchResolver struct {
	target Target
	cc     resolver.ClientConn
	log    *slog.Logger
	stop   func()
	wg     sync.WaitGroup
	closed atomic.Bool

	sent  bool
	addrs []string // last addresses sent
}

// run feeds the channel every view of the service until the watch ends.
func (r *watchResolver) run(c *client.Client, views <-chan *pb.View, readyTimeout time.Duration) {
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	for {
		select {
		case v, ok := <-views:
			if !ok {
				if !r.closed.Load() {
					r.cc.ReportError(client.ErrClosed)
				}
				return
			}
			r.update(v)
		case <-timer.C:
			if r.sent {
				continue
			}
			if err := c.Err(); err != nil {
				r.log.Warn("understudy resolver: no views from the registry yet", "err", err)
				r.cc.ReportError(err)
			}
		}
	}
}

// update sends v's addresses to the channel when they changed. No address
// (no primary right now, every member failing) is sent as an empty state,
// not an error: the channel stays, fails its calls fast (or holds
// wait-for-ready calls) and recovers with the next view.
func (r *watchResolver) update(v *pb.View) {
	addrs := r.target.Addresses(v)
	if r.sent && slices.Equal(addrs, r.addrs) {
		return
	}
	r.sent, r.addrs = true, addrs
	state := resolver.State{Endpoints: make([]resolver.Endpoint, 0, len(addrs))}
	for _, a := range addrs {
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
	}
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("understudy resolver: addresses changed", "addresses", addrs, "view", registry.FormatView(v))
	}
	if err := r.cc.UpdateState(state); err != nil && len(addrs) > 0 {
		r.log.Debug("understudy resolver: channel rejected the addresses", "err", err)
	}
}

// ResolveNow implements resolver.Resolver. Views are pushed, so there is
// nothing to do.
func (r *watchResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close implements resolver.Resolver: it stops the watch and waits for the
// goroutine that feeds the channel.
func (r *watchResolver) Close() {
	r.closed.Store(true)
	r.stop()
	r.wg.Wait()
}
