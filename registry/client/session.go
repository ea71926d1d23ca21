package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// longSession is how long a session must have lasted for the next server to
// be tried without a pause: a server that answers and fails at once, again
// and again, is backed off like one that does not answer.
const longSession = time.Second

// run keeps a Watch session open, moving round the addresses, until ctx is
// done. It is the only goroutine that talks to servers and the only writer
// of the cache.
func (c *Client) run(ctx context.Context) {
	defer c.stopWatches()
	next := 0
	pause := c.cfg.MinBackoff
	failed := 0  // attempts in a row that were not long sessions
	seeking := 0 // servers left in a row because they served stale views
	for ctx.Err() == nil {
		addr := c.cfg.Addrs[next]
		next = (next + 1) % len(c.cfg.Addrs)
		start := time.Now()
		// Having left a stale server, pass over others that are stale too
		// (a zone cut off holds several), until every one has been tried.
		served, err := c.session(ctx, addr, seeking > 0 && seeking < len(c.cfg.Addrs))
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errStaleServer) {
			seeking++
		} else {
			seeking = 0
		}
		c.lost(addr, served, err)
		if served && time.Since(start) >= longSession {
			failed, pause = 0, c.cfg.MinBackoff
			continue
		}
		failed++
		if failed%len(c.cfg.Addrs) == 0 { // a whole round failed
			sleep(ctx, jitter(pause))
			pause = min(2*pause, c.cfg.MaxBackoff)
		}
	}
}

// session watches one server. served reports whether the server sent its
// first message (and the cache was brought up to date from it).
// With skipStale, a server whose first message is a stale snapshot is left
// at once.
func (c *Client) session(ctx context.Context, addr string, skipStale bool) (served bool, err error) {
	conn, err := c.conn(addr)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	var probes sync.WaitGroup
	defer func() {
		cancel(nil)
		probes.Wait()
	}()
	timer := time.AfterFunc(c.cfg.ConnectTimeout, func() {
		cancel(fmt.Errorf("%w: no first message within %v", errSilent, c.cfg.ConnectTimeout))
	})
	defer timer.Stop()

	cli := pb.NewRegistryServiceClient(conn)
	stream, err := cli.Watch(sctx, &pb.WatchRequest{Services: c.cfg.Services, FromRevision: c.Revision()})
	if err != nil {
		return false, cause(sctx, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return false, cause(sctx, err)
	}
	if !timer.Stop() {
		return false, context.Cause(sctx)
	}
	if skipStale && staleSnapshot(first) {
		return false, errStaleServer
	}
	c.connected(addr, first)
	if !first.GetSnapshot() {
		c.refreshServerStale(sctx, cli)
	}
	probes.Go(func() { c.probe(sctx, conn, cancel) })
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, cause(sctx, err)
		}
		c.apply(m)
	}
}

// staleSnapshot reports whether a server's first message says it has no
// quorum: a stale server always starts with a snapshot of stale views.
func staleSnapshot(m *pb.WatchResponse) bool {
	return m.GetSnapshot() && slices.ContainsFunc(m.GetViews(), (*pb.View).GetStale)
}

// cause prefers the reason the session's context was cancelled, when it
// was, to the stream's own error.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// conn returns the connection to addr, created on first use. Connections
// stay open (reconnecting in the background with a short backoff) until
// Close.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	if conn := c.conns[addr]; conn != nil {
		return conn, nil
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: c.cfg.MinBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: c.cfg.MaxBackoff,
			},
			MinConnectTimeout: c.cfg.ConnectTimeout,
		}),
	}
	conn, err := grpc.NewClient(addr, append(opts, c.cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	c.conns[addr] = conn
	return conn, nil
}

// connected applies a session's first message: a snapshot replaces the
// cache; a resume carries the views changed since the client's revision,
// and vouches for the rest. Either way the local stale mark goes.
func (c *Client) connected(addr string, first *pb.WatchResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reconnect := c.isReady()
	if addr != c.server { // not a later snapshot on the same stream
		if reconnect {
			c.outage = time.Since(c.since)
		}
		c.server, c.since, c.attempts = addr, time.Now(), 0
	}
	c.resumed = !first.GetSnapshot()
	touched := map[string]bool{}
	for _, v := range first.GetViews() {
		touched[v.GetService()] = true
		c.setLocked(v)
	}
	if first.GetSnapshot() {
		for name := range c.srv {
			if !touched[name] {
				c.removeLocked(name, first.GetRevision())
			}
		}
		c.rev = first.GetRevision()
	} else {
		c.rev = max(c.rev, first.GetRevision())
	}
	for name, v := range c.srv {
		if !touched[name] {
			c.publishLocked(name, v) // clears the local stale mark
		}
	}
	if !reconnect {
		close(c.ready)
	}
	c.notifyAbsentLocked()
	c.log.Info("registry client: watching", "server", addr, "revision", c.rev,
		"snapshot", first.GetSnapshot(), "views", len(first.GetViews()), "outage", c.outage.Round(time.Millisecond))
}

// refreshServerStale re-reads views that the previous server sent marked
// stale and that the resume did not resend: the new server vouches that
// they did not change, but only it can say whether they are current.
func (c *Client) refreshServerStale(ctx context.Context, cli pb.RegistryServiceClient) {
	c.mu.Lock()
	need := false
	for _, v := range c.srv {
		need = need || v.GetStale()
	}
	c.mu.Unlock()
	if !need {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	resp, err := cli.ListServices(rctx, &pb.ListServicesRequest{})
	cancel()
	if err != nil {
		c.log.Warn("registry client: cannot re-read views marked stale", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range resp.GetViews() {
		// Only an unchanged view is replaced: a newer one is on its way
		// in the stream, and must not be overtaken by an older one.
		if cur := c.srv[v.GetService()]; cur.GetStale() && cur.GetRevision() == v.GetRevision() {
			c.setLocked(v)
		}
	}
}

// apply applies one stream message after the first.
func (c *Client) apply(m *pb.WatchResponse) {
	if m.GetSnapshot() {
		c.connected(c.Status().Server, m)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range m.GetViews() {
		c.setLocked(v)
	}
	c.rev = max(c.rev, m.GetRevision())
}

// lost records the end of a session or a failed attempt. A client that
// lost its server marks every view stale (a copy; the server's stays).
func (c *Client) lost(addr string, served bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = fmt.Errorf("%s: %w", addr, err)
	c.attempts++
	if !served {
		c.log.Debug("registry client: server did not answer", "server", addr, "err", err)
		return
	}
	c.server, c.since = "", time.Now()
	for name, v := range c.srv {
		if !c.pub[name].GetStale() {
			c.publishLocked(name, v)
		}
	}
	c.log.Warn("registry client: lost registry server; serving cached views as stale while switching",
		"server", addr, "revision", c.rev, "err", err)
}

// probe asks the server for its health every ProbeInterval and ends the
// session (through cancel) when it does not answer, or when it has served
// stale views for StaleSwitchAfter and other servers may do better.
func (c *Client) probe(ctx context.Context, conn *grpc.ClientConn, cancel context.CancelCauseFunc) {
	if c.cfg.ProbeInterval < 0 {
		return
	}
	hc := healthpb.NewHealthClient(conn)
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	var staleSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
		resp, err := hc.Check(pctx, &healthpb.HealthCheckRequest{Service: pb.RegistryService_ServiceDesc.ServiceName})
		pcancel()
		if ctx.Err() != nil {
			return
		}
		switch status.Code(err) {
		case codes.OK:
		case codes.Unimplemented, codes.NotFound:
			continue // it answered; it just has no health service
		default:
			cancel(fmt.Errorf("%w: health probe: %v", errSilent, err))
			return
		}
		if resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			staleSince = time.Time{}
			continue
		}
		if len(c.cfg.Addrs) < 2 || c.cfg.StaleSwitchAfter < 0 {
			continue
		}
		if staleSince.IsZero() {
			staleSince = time.Now()
		} else if time.Since(staleSince) >= c.cfg.StaleSwitchAfter {
			cancel(errStaleServer)
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// jitter spreads d by ±20% so that many clients do not retry in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
