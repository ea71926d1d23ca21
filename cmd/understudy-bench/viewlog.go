package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// seenView is one view as the subscriber received it.
type seenView struct {
	at   time.Time // stamped right after Recv returned
	view *pb.View
}

// viewLog is one Watch subscriber on one service that keeps every view it
// receives with its arrival time, so that a measurement can look back at
// views that arrived before it started waiting. It also checks, across the
// whole run, that every new primary has a higher epoch than the one before.
type viewLog struct {
	service string
	conn    *grpc.ClientConn
	cancel  context.CancelFunc
	done    chan struct{}

	mu        sync.Mutex
	views     []seenView
	changed   chan struct{} // closed and replaced on every new view
	err       error         // why the stream ended, once it has
	primaries int           // views that brought a new primary (host, epoch)
	lastHost  string
	lastEpoch int64
	regressed []string // new primaries whose epoch was not higher
}

// watchViews subscribes to service on the registry at addr and returns once
// the snapshot has arrived.
func watchViews(ctx context.Context, addr, service string) (*viewLog, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	l := &viewLog{service: service, conn: conn, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	stream, err := pb.NewRegistryServiceClient(conn).Watch(sctx, &pb.WatchRequest{Services: []string{service}})
	if err == nil {
		var first *pb.WatchResponse
		if first, err = stream.Recv(); err == nil {
			l.add(time.Now(), first)
		}
	}
	if err != nil {
		cancel()
		_ = conn.Close()
		return nil, fmt.Errorf("watch %s: %w", service, err)
	}
	go func() {
		defer close(l.done)
		for {
			msg, err := stream.Recv()
			if err != nil {
				l.fail(err)
				return
			}
			l.add(time.Now(), msg)
		}
	}()
	return l, nil
}

func (l *viewLog) add(at time.Time, msg *pb.WatchResponse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.views)
	for _, v := range msg.GetViews() {
		if v.GetService() != l.service {
			continue
		}
		l.views = append(l.views, seenView{at: at, view: v})
		p := v.GetPrimary()
		if p == nil || (p.GetHost() == l.lastHost && p.GetEpoch() == l.lastEpoch) {
			continue
		}
		l.primaries++
		if p.GetEpoch() <= l.lastEpoch {
			l.regressed = append(l.regressed, fmt.Sprintf("%s epoch %d after %s epoch %d", p.GetHost(), p.GetEpoch(), l.lastHost, l.lastEpoch))
		}
		l.lastHost, l.lastEpoch = p.GetHost(), p.GetEpoch()
	}
	if len(l.views) > n {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

func (l *viewLog) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
	close(l.changed)
	l.changed = make(chan struct{})
}

// mark is the index the next view will get: wait(mark(), ...) looks only at
// views that arrive from now on.
func (l *viewLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.views)
}

// latest is the index of the last view received, so that wait(latest(), ...)
// also considers the current state.
func (l *viewLog) latest() int { return max(l.mark()-1, 0) }

// errViewTimeout is returned by wait when no view matched in time.
var errViewTimeout = errors.New("no matching view")

// wait returns the first view at index from or later for which match is
// true, and its index. It blocks until one arrives, timeout passes (the
// error then describes the last view seen), the stream ends or ctx is done.
func (l *viewLog) wait(ctx context.Context, from int, timeout time.Duration, what string, match func(*pb.View) bool) (int, seenView, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for i := from; ; {
		l.mu.Lock()
		for ; i < len(l.views); i++ {
			if match(l.views[i].view) {
				sv := l.views[i]
				l.mu.Unlock()
				return i, sv, nil
			}
		}
		changed, err := l.changed, l.err
		var last *pb.View
		if len(l.views) > 0 {
			last = l.views[len(l.views)-1].view
		}
		l.mu.Unlock()
		if err != nil {
			return 0, seenView{}, fmt.Errorf("waiting for %s: the watch stream ended: %w", what, err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, seenView{}, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-timer.C:
			return 0, seenView{}, fmt.Errorf("waiting for %s: %w after %v; last view: %s", what, errViewTimeout, timeout, describeView(last))
		}
	}
}

// stats returns how many views and new primaries the subscriber saw, and
// every epoch that failed to increase.
func (l *viewLog) stats() (views, primaries int, regressed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.views), l.primaries, append([]string(nil), l.regressed...)
}

// close ends the stream and waits for its reader.
func (l *viewLog) close() {
	l.cancel()
	<-l.done
	_ = l.conn.Close()
}

// describeView is a one-line summary for error messages.
func describeView(v *pb.View) string {
	if v == nil {
		return "none"
	}
	s := fmt.Sprintf("rev %d %s primary %s/%d;", v.GetRevision(), v.GetStatus(), v.GetPrimary().GetHost(), v.GetPrimary().GetEpoch())
	for _, in := range v.GetInstances() {
		s += fmt.Sprintf(" %s %s", in.GetHost(), in.GetHealth())
	}
	return s
}

// instanceOf returns host's instance in v, nil when it is not registered.
func instanceOf(v *pb.View, host string) *pb.Instance {
	for _, in := range v.GetInstances() {
		if in.GetHost() == host {
			return in
		}
	}
	return nil
}
