package agent

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Probe cadence: an unresponsive member is noticed within
// probeInterval+probeTimeout (1.5 s), well inside the time a renewal has
// before the fence point (5/12 of the TTL: 2 s for the default 5 s TTL).
const (
	probeInterval = 500 * time.Millisecond
	probeTimeout  = time.Second
)

// prober keeps the agent's etcd client on the members that answer.
//
// gRPC alone is too slow for that: it raises client keepalive pings below
// 10 s to 10 s (grpc-go dialoptions.go, internal.KeepaliveMinPingTime), so
// a connection to a frozen member stays open and the RPCs and watch
// streams on it hang. Taking the member out of the client's endpoint list
// is not enough either: the balancer shuts its SubConn down with
// errConnDrain, which closes the transport gracefully (clientconn.go
// tearDown → http2Client.GracefulClose): new RPCs go elsewhere but the
// streams already on it keep waiting. So the prober also closes the
// client's TCP connections to the member, which fails those streams with
// Unavailable; clientv3 then resumes watches from their revision and
// retries KeepAliveOnce on a member still listed.
//
// Each member is asked on its own connection for a linearizable read of a
// key this host may always read, counting only: one ReadIndex round at the
// leader and no disk write. Unlike Maintenance.Status, or the gRPC health
// service (which etcd only turns off during a defragmentation), it fails
// on a member that is up but cut off from the leader or from a quorum:
// one the agent's writes and renewals would wait on too. It also keeps a
// resumed old leader out until it has learned of the new term.
type prober struct {
	cli   *clientv3.Client
	all   []string // configured endpoints, in order
	key   string
	conns *connTracker
	log   *slog.Logger
}

func newProber(cli *clientv3.Client, endpoints []string, key string, conns *connTracker, log *slog.Logger) *prober {
	return &prober{cli: cli, all: slices.Clone(endpoints), key: key, conns: conns, log: log}
}

// run probes every endpoint every probeInterval and keeps the client's
// endpoint list to the healthy ones until ctx is done.
func (p *prober) run(ctx context.Context) {
	probes := make([]etcdpb.KVClient, len(p.all))
	for i, ep := range p.all {
		conn, err := p.cli.Dial(ep)
		if err != nil { // only a malformed target fails; config validation rules that out
			p.log.Warn("agent: cannot probe etcd endpoint", "endpoint", ep, "err", err)
			return
		}
		defer conn.Close()
		probes[i] = etcdpb.NewKVClient(conn)
	}
	healthy := slices.Clone(p.all) // what the client uses now
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		ok := make([]bool, len(p.all))
		var wg sync.WaitGroup
		for i := range p.all {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, probeTimeout)
				defer cancel()
				_, err := probes[i].Range(pctx, &etcdpb.RangeRequest{Key: []byte(p.key), CountOnly: true}, grpc.WaitForReady(true))
				ok[i] = err == nil
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		healthy = p.apply(healthy, ok)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// apply moves the client to the endpoints that answered, logging only
// changes, and returns the new healthy set.
func (p *prober) apply(before []string, ok []bool) []string {
	now, down, up := healthySet(p.all, before, ok)
	for _, ep := range down {
		p.log.Warn("agent: etcd endpoint does not answer; using the others", "endpoint", ep)
	}
	for _, ep := range up {
		p.log.Info("agent: etcd endpoint answers again", "endpoint", ep)
	}
	if len(down) == 0 && len(up) == 0 {
		return before
	}
	use := now
	if len(now) == 0 {
		p.log.Warn("agent: no etcd endpoint answers; trying them all")
		use = p.all
	}
	// Listed first, so reconnecting streams cannot pick the member again.
	p.cli.SetEndpoints(use...)
	// Close what just stopped answering, and whatever is not used: a member
	// that froze while none answered (its leader gone too) is only left
	// once the others answer again, and must not keep streams then.
	for _, ep := range p.all {
		if slices.Contains(down, ep) || !slices.Contains(use, ep) {
			p.conns.closeAll(dialAddr(ep))
		}
	}
	return now
}

// healthySet returns the endpoints of all whose probe succeeded, in
// configured order, and which of them went down or came back compared
// with before.
func healthySet(all, before []string, ok []bool) (now, down, up []string) {
	for i, ep := range all {
		was := slices.Contains(before, ep)
		switch {
		case ok[i]:
			now = append(now, ep)
			if !was {
				up = append(up, ep)
			}
		case was:
			down = append(down, ep)
		}
	}
	return now, down, up
}

// dialAddr is the host:port gRPC dials for an http(s)://host:port endpoint
// (the only form the config accepts).
func dialAddr(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return endpoint
	}
	return u.Host
}

// connTracker dials the etcd client's TCP connections and can close all of
// those to one address at once.
type connTracker struct {
	mu    sync.Mutex
	conns map[string]map[*trackedConn]struct{} // by dialled address
}

func newConnTracker() *connTracker {
	return &connTracker{conns: map[string]map[*trackedConn]struct{}{}}
}

// dial is a gRPC context dialer.
func (t *connTracker) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t, addr: addr}
	t.mu.Lock()
	if t.conns[addr] == nil {
		t.conns[addr] = map[*trackedConn]struct{}{}
	}
	t.conns[addr][tc] = struct{}{}
	t.mu.Unlock()
	return tc, nil
}

// closeAll closes every open connection to addr.
func (t *connTracker) closeAll(addr string) {
	t.mu.Lock()
	var cs []*trackedConn
	for c := range t.conns[addr] {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	addr string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns[c.addr], c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}
