package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/understudy-dev/understudy/e2e/kvdemo"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/client"
)

// Ack is a write the demo database acknowledged to a writer.
type Ack struct {
	Writer string
	Seq    int64
	Host   string
	Epoch  int64
	// At is when the acknowledgement arrived.
	At time.Time
}

// writer writes to the database's primary every writeInterval, as an
// application would.
//
// In ask mode it asks the registry client for the primary before each
// write and sends that primary's epoch. In noask mode it sends no epoch,
// and either holds its connection or follows the registry:
//
//   - holding, it behaves like a PostgreSQL client (libpq with
//     target_session_attrs=read-write): it keeps one keep-alive connection
//     to the host it writes to and sends there until that host refuses or
//     fails (an error, a timeout); only then does it ask the registry again
//     and connect anew;
//   - following, it is every new client: it asks the registry before each
//     write and connects afresh. Without one, an old primary that goes on
//     taking writes on held connections would never meet a new one taking
//     writes too, and a split brain would go unobserved.
type writer struct {
	name    string
	noask   bool
	holds   bool // noask mode: hold the connection (else follow)
	cli     *client.Client
	http    *http.Client // ask mode
	lastSeq int64        // run's goroutine only
	held    *heldConn    // noask mode; run's goroutine only

	mu      sync.Mutex
	acks    []Ack
	stale   int // writes refused for a superseded epoch
	refused int // writes refused for any other reason, or unanswered
}

// writeInterval is the pause between a writer's writes: 50 a second each.
const writeInterval = 20 * time.Millisecond

// follow returns a registry client of the database, as an application
// would configure one: every server, default timeouts.
func follow(ctx context.Context, addrs []string, log *slog.Logger) (*client.Client, error) {
	cfg := client.DefaultConfig(addrs...)
	cfg.Services = []string{dbService}
	cfg.Logger = log
	return client.NewFromConfig(ctx, cfg)
}

// writeTimeout bounds one write, connecting included.
const writeTimeout = time.Second

func newWriter(ctx context.Context, name string, noask, holds bool, addrs []string, log *slog.Logger) (*writer, error) {
	cli, err := follow(ctx, addrs, log)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Timeout: writeTimeout}
	if noask && !holds {
		c.Transport = &http.Transport{DisableKeepAlives: true} // a new connection each write
	}
	return &writer{name: name, noask: noask, holds: holds, cli: cli, http: c}, nil
}

// heldConn is a noask writer's connection to one host: a transport that
// keeps at most one connection open.
type heldConn struct {
	host, addr string
	tr         *http.Transport
	http       *http.Client
}

func dialHeld(p *pb.Primary) *heldConn {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: writeTimeout, KeepAlive: 15 * time.Second}).DialContext,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	return &heldConn{host: p.GetHost(), addr: p.GetAddress(), tr: tr, http: &http.Client{Transport: tr, Timeout: writeTimeout}}
}

func (w *writer) run(ctx context.Context) {
	defer w.cli.Close()
	defer func() {
		if w.held != nil {
			w.held.tr.CloseIdleConnections()
		}
	}()
	for ctx.Err() == nil {
		if w.noask && w.holds {
			w.writeHeld(ctx)
		} else if p, ok := w.cli.Primary(dbService); ok && p.GetEpoch() > 0 {
			w.write(ctx, p)
		}
		select {
		case <-ctx.Done():
		case <-time.After(writeInterval):
		}
	}
}

func (w *writer) write(ctx context.Context, p *pb.Primary) {
	w.lastSeq++
	req := kvdemo.WriteRequest{Key: w.name, Value: fmt.Sprint(w.lastSeq), Epoch: p.GetEpoch(), Writer: w.name, Seq: w.lastSeq}
	if w.noask {
		req.Epoch = 0 // a PostgreSQL client knows no epoch
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.GetAddress()+"/write", bytes.NewReader(body))
	if err != nil {
		return
	}
	w.send(w.http, hreq, req.Seq)
}

// writeHeld sends one write on the held connection, connecting to the
// registry's primary first if none is held; a refusal or an error drops
// the connection.
func (w *writer) writeHeld(ctx context.Context) {
	if w.held == nil {
		p, ok := w.cli.Primary(dbService)
		if !ok || p.GetAddress() == "" {
			return
		}
		w.held = dialHeld(p)
	}
	w.lastSeq++
	req := kvdemo.WriteRequest{Key: w.name, Value: fmt.Sprint(w.lastSeq), Writer: w.name, Seq: w.lastSeq}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+w.held.addr+"/write", bytes.NewReader(body))
	if err != nil {
		return
	}
	if !w.send(w.held.http, hreq, req.Seq) {
		w.held.tr.CloseIdleConnections()
		w.held = nil
	}
}

// send posts one write and records the outcome: an acknowledgement with
// the host and epoch the server logged, or a refusal. It reports whether
// the write was acknowledged.
func (w *writer) send(c *http.Client, hreq *http.Request, seq int64) bool {
	resp, err := c.Do(hreq)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.refused++
		return false
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		var rec kvdemo.Write
		if err != nil || json.Unmarshal(b, &rec) != nil {
			// Logged, perhaps, but not known to the client as acknowledged.
			w.refused++
			return false
		}
		w.acks = append(w.acks, Ack{Writer: w.name, Seq: seq, Host: rec.Host, Epoch: rec.Epoch, At: time.Now()})
		return true
	case http.StatusConflict:
		w.stale++
	default:
		w.refused++
	}
	return false
}

// counts returns the writer's refusals so far.
func (w *writer) counts() (stale, refused int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stale, w.refused
}

// acksSince returns the acknowledgements that arrived at or after t.
func (w *writer) acksSince(t time.Time) []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, _ := slices.BinarySearchFunc(w.acks, t, func(a Ack, t time.Time) int { return a.At.Compare(t) })
	return slices.Clone(w.acks[i:])
}

// Sighting is a primary a watcher saw, in the order it saw them.
type Sighting struct {
	Host  string
	Epoch int64
	At    time.Time
}

// watcher records every change of the database's primary it is told of.
type watcher struct {
	name string
	cli  *client.Client

	mu   sync.Mutex
	seen []Sighting
}

func newWatcher(ctx context.Context, name string, addrs []string, log *slog.Logger) (*watcher, error) {
	cli, err := follow(ctx, addrs, log)
	if err != nil {
		return nil, err
	}
	return &watcher{name: name, cli: cli}, nil
}

func (w *watcher) run(ctx context.Context) {
	defer w.cli.Close()
	ch, stop := w.cli.Watch(dbService)
	defer stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-ch:
			if !ok {
				return
			}
			p := v.GetPrimary()
			if p == nil || p.GetEpoch() == last {
				continue
			}
			last = p.GetEpoch()
			w.mu.Lock()
			w.seen = append(w.seen, Sighting{Host: p.GetHost(), Epoch: p.GetEpoch(), At: time.Now()})
			w.mu.Unlock()
		}
	}
}

// sightings returns what the watcher saw so far.
func (w *watcher) sightings() []Sighting {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// firstAfter returns when the watcher first saw a primary with an epoch
// above epoch, at or after t.
func (w *watcher) firstAfter(t time.Time, epoch int64) (Sighting, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.seen {
		if s.Epoch > epoch && !s.At.Before(t) {
			return s, true
		}
	}
	return Sighting{}, false
}
