package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// Config configures a Client. Only Addrs is required.
type Config struct {
	// Addrs are the gRPC addresses (host:port) of the registry servers. The
	// client watches one at a time and moves to the next when it fails.
	Addrs []string
	// Services limits the client to these services. Empty: every service,
	// including ones that appear later.
	Services []string
	// DialOptions are applied after the client's own (plaintext transport,
	// reconnect backoff capped at MaxBackoff), so they override them: pass
	// TLS credentials here.
	DialOptions []grpc.DialOption
	// ConnectTimeout bounds how long one server may take to send the first
	// message of a Watch before the client tries the next. Default 1s.
	ConnectTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause after every server failed in
	// a row; it doubles from MinBackoff up to MaxBackoff. A server that goes
	// away while the client watches it is replaced at once, without a pause.
	// Defaults 100ms and 1s.
	MinBackoff, MaxBackoff time.Duration
	// ProbeInterval is how often the client asks the server it watches for
	// its health over the same connection, to notice a server that went
	// silent (a partition sends no error) or that serves stale views.
	// Default 1s; negative: never.
	ProbeInterval time.Duration
	// ProbeTimeout bounds each probe; a probe that times out ends the
	// session. Default 1s.
	ProbeTimeout time.Duration
	// StaleSwitchAfter: when the server has reported for this long that it
	// lost its etcd quorum (its views are stale), the client tries the other
	// servers for current views. Default 3s; negative: never. It needs more
	// than one address and ProbeInterval ≥ 0.
	StaleSwitchAfter time.Duration
	// Logger receives connection changes. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config for addrs with every default filled in.
func DefaultConfig(addrs ...string) Config {
	c := Config{Addrs: addrs}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Second
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = time.Second
	}
	if c.StaleSwitchAfter == 0 {
		c.StaleSwitchAfter = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate checks the configuration, naming the offending field.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("addrs is empty: name at least one registry server"))
	}
	for i, a := range c.Addrs {
		if strings.TrimSpace(a) == "" {
			errs = append(errs, fmt.Errorf("addrs[%d] is empty", i))
		}
	}
	for i, s := range c.Services {
		if err := registry.ValidateName(fmt.Sprintf("services[%d]", i), s); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("min-backoff %v is larger than max-backoff %v", c.MinBackoff, c.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Client watches the registry and caches the latest view of every watched
// service. It is safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	filter map[string]bool // nil: every service

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	conns     map[string]*grpc.ClientConn // by address; used by run only, closed by Close
	ready     chan struct{}               // closed once the first views arrived
	done      <-chan struct{}             // closed when the client stops

	mu       sync.Mutex
	srv      map[string]*pb.View // views as the server sent them (never modified)
	pub      map[string]*pb.View // views served: srv, or a stale-marked copy while disconnected
	rev      int64               // every change up to rev is reflected in srv
	server   string              // address being watched; "" while disconnected
	since    time.Time           // when server last changed
	resumed  bool                // the current server resumed rather than sent a snapshot
	outage   time.Duration       // time without a server before the current one
	lastErr  error               // why the last session or attempt failed
	attempts int                 // attempts since the last served session
	watchers map[string]map[*watcher]struct{}
	closed   bool
}

// New returns a client of the registry servers at addrs (host:port) with
// default settings; see NewFromConfig.
func New(ctx context.Context, addrs ...string) (*Client, error) {
	return NewFromConfig(ctx, Config{Addrs: addrs})
}

// NewFromConfig starts a client. It does not block: the client connects in
// the background, and Ready or WaitReady report when the first views have
// arrived. It fails only on an invalid configuration.
//
// ctx is the client's lifetime, not a dial timeout: when it is done the
// client stops as if closed (Watch channels are closed too), but Close must
// still be called to release its connections.
func NewFromConfig(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("registry client: %w", err)
	}
	cfg.setDefaults()
	cfg.Addrs = slices.Clone(cfg.Addrs)
	cfg.Services = slices.Clone(cfg.Services)
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		conns:    map[string]*grpc.ClientConn{},
		ready:    make(chan struct{}),
		srv:      map[string]*pb.View{},
		pub:      map[string]*pb.View{},
		watchers: map[string]map[*watcher]struct{}{},
		since:    time.Now(),
	}
	if len(cfg.Services) > 0 {
		c.filter = map[string]bool{}
		for _, s := range cfg.Services {
			c.filter[s] = true
		}
	}
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = ctx.Done()
	c.wg.Go(func() { c.run(ctx) })
	return c, nil
}

// Close stops the client, waits for its goroutines, closes the channels of
// every Watch and its connections. Safe to call more than once. The cache
// stays readable.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		for _, conn := range c.conns {
			_ = conn.Close()
		}
	})
}

// stopWatches closes the channel of every Watch; later ones get a closed
// channel. It runs when the client stops.
func (c *Client) stopWatches() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, ws := range c.watchers {
		for w := range ws {
			close(w.ch)
		}
	}
	c.watchers = nil
}

// Ready is closed once the client holds the views of a first server.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// WaitReady blocks until the client holds the views of a first server, and
// returns nil from then on, even while it reconnects. When ctx ends first it
// returns Err's error (naming the addresses tried and the last error)
// wrapping ctx.Err() too; after Close, ErrClosed.
func (c *Client) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		if err := c.Err(); err != nil {
			return fmt.Errorf("%w: %w", err, ctx.Err())
		}
		return nil
	}
}

// Err is nil once the client holds the views of a first server (even while
// it reconnects later). Before that it wraps ErrNoServer and names the
// addresses tried and the last error; after Close it is ErrClosed.
func (c *Client) Err() error {
	if c.isReady() {
		return nil
	}
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Errorf("registry client: %w (tried %s; attempts: %d); last error: %v",
		ErrNoServer, strings.Join(c.cfg.Addrs, ", "), c.attempts, c.lastErr)
}

// Status describes the client's connection to the registry.
type Status struct {
	// Server is the address of the server being watched; empty while the
	// client has none and serves its cached views as stale.
	Server string
	// Since is when Server last changed.
	Since time.Time
	// Revision is the registry revision the cache is complete up to.
	Revision int64
	// Ready is true once a first server sent its views.
	Ready bool
	// Resumed is true when the current server resumed from the client's
	// revision (sent only what changed) rather than sending a snapshot.
	Resumed bool
	// LastOutage is how long the client was without a server before it got
	// the current one (zero for the first).
	LastOutage time.Duration
	// LastError is why the last server or connection attempt failed.
	LastError error
}

// Status reports the client's connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{
		Server: c.server, Since: c.since, Revision: c.rev, Resumed: c.resumed,
		LastOutage: c.outage, LastError: c.lastErr,
	}
	select {
	case <-c.ready:
		st.Ready = true
	default:
	}
	return st
}

// View returns the latest view of service and true, or nil and false when
// the service has no instances (or the client has no views yet). While the
// client has no server the view is a copy marked stale. The view is shared:
// do not modify it.
func (c *Client) View(service string) (*pb.View, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.pub[service]
	return v, ok
}

// Views returns every cached view, sorted by service.
func (c *Client) Views() []*pb.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*pb.View, 0, len(c.pub))
	for _, v := range c.pub {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *pb.View) int { return strings.Compare(a.GetService(), b.GetService()) })
	return out
}

// Primary returns the acting primary of a primary-mode service and true, or
// nil and false while it has none or the service is unknown.
func (c *Client) Primary(service string) (*pb.Primary, bool) {
	v, _ := c.View(service)
	p := v.GetPrimary()
	return p, p != nil
}

// Members returns the healthy instances of service (for a primary-mode
// service, the primary and its healthy standbys), sorted by host; nil when
// none.
func (c *Client) Members(service string) []*pb.Instance {
	v, _ := c.View(service)
	return registry.Healthy(v)
}

// Revision is the registry revision the cache is complete up to.
func (c *Client) Revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

func (c *Client) wants(service string) bool { return c.filter == nil || c.filter[service] }

// gone reports whether v says its service no longer exists.
func gone(v *pb.View) bool { return len(v.GetInstances()) == 0 && v.GetPrimary() == nil }

// absent is the view sent to watchers of a service that has none.
func absent(service string, rev int64) *pb.View {
	return &pb.View{Service: service, Status: pb.Status_STATUS_DOWN, Revision: rev}
}

// staleCopy returns v marked stale, copying it (v is shared).
func staleCopy(v *pb.View) *pb.View {
	if v.GetStale() {
		return v
	}
	s := proto.CloneOf(v)
	s.Stale = true
	return s
}

// setLocked records v, as sent by the server, and tells watchers.
func (c *Client) setLocked(v *pb.View) {
	name := v.GetService()
	if !c.wants(name) {
		return
	}
	if gone(v) {
		delete(c.srv, name)
		delete(c.pub, name)
		c.notifyLocked(name, v)
		return
	}
	c.srv[name] = v
	c.publishLocked(name, v)
}

// removeLocked forgets a service missing from a snapshot.
func (c *Client) removeLocked(name string, rev int64) {
	delete(c.srv, name)
	delete(c.pub, name)
	c.notifyLocked(name, absent(name, rev))
}

// publishLocked serves v (a copy marked stale while disconnected).
func (c *Client) publishLocked(name string, v *pb.View) {
	if c.server == "" {
		v = staleCopy(v)
	}
	c.pub[name] = v
	c.notifyLocked(name, v)
}
