package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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

// writer follows the primary of the database through the registry and
// writes to it every writeInterval, as an application would.
type writer struct {
	name    string
	cli     *client.Client
	http    *http.Client
	lastSeq int64 // run's goroutine only

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

func newWriter(ctx context.Context, name string, addrs []string, log *slog.Logger) (*writer, error) {
	cli, err := follow(ctx, addrs, log)
	if err != nil {
		return nil, err
	}
	return &writer{name: name, cli: cli, http: &http.Client{Timeout: time.Second}}, nil
}

func (w *writer) run(ctx context.Context) {
	defer w.cli.Close()
	for ctx.Err() == nil {
		p, ok := w.cli.Primary(dbService)
		if ok && p.GetEpoch() > 0 {
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
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.GetAddress()+"/write", bytes.NewReader(body))
	if err != nil {
		return
	}
	resp, err := w.http.Do(hreq)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.refused++
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		w.acks = append(w.acks, Ack{Writer: w.name, Seq: req.Seq, Host: p.GetHost(), Epoch: req.Epoch, At: time.Now()})
	case http.StatusConflict:
		w.stale++
	default:
		w.refused++
	}
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
