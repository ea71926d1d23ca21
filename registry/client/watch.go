package client

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// watcher is one Watch call: a channel of capacity one that always holds
// the latest undelivered view (latest value wins).
type watcher struct {
	service string
	ch      chan *pb.View
	last    *pb.View // last view offered, to skip repeats
}

// offer replaces any undelivered view with v. It never blocks: the client
// is the only sender and sends with c.mu held, so after draining the buffer
// there is room.
func (w *watcher) offer(v *pb.View) {
	w.last = v
	select {
	case w.ch <- v:
		return
	default:
	}
	select {
	case <-w.ch:
	default:
	}
	w.ch <- v
}

// sameView reports whether a watcher that saw a needs to see b: two views
// of a service that is gone are the same whatever their revisions.
func sameView(a, b *pb.View) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	if gone(a) && gone(b) {
		return true
	}
	return proto.Equal(a, b)
}

// notifyLocked offers v to the watchers of service that have not seen it.
func (c *Client) notifyLocked(service string, v *pb.View) {
	for w := range c.watchers[service] {
		if !sameView(w.last, v) {
			w.offer(v)
		}
	}
}

// Watch returns a channel that receives the view of service every time it
// changes, in order, starting with the current one; and a function that
// stops the watch and closes the channel.
//
// The channel holds one view: a consumer that falls behind receives the
// latest view, never a backlog, and never slows the client down. A service
// with no instances is sent as a view with no instances and status DOWN;
// a change of only the stale mark (the client lost or regained its server)
// is sent too. Nothing is sent before the client has its first views.
//
// The channel is closed by the returned function and when the client stops
// (Close, or the end of its context). When the client was configured with
// Services and service is not among them, the channel is closed at once.
func (c *Client) Watch(service string) (<-chan *pb.View, func()) {
	w := &watcher{service: service, ch: make(chan *pb.View, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.wants(service) {
		close(w.ch)
		return w.ch, func() {}
	}
	ws := c.watchers[service]
	if ws == nil {
		ws = map[*watcher]struct{}{}
		c.watchers[service] = ws
	}
	ws[w] = struct{}{}
	if v := c.pub[service]; v != nil {
		w.offer(v)
	} else if c.isReady() {
		w.offer(absent(service, c.rev))
	}
	stopped := false
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if stopped || c.closed {
			return
		}
		stopped = true
		delete(c.watchers[service], w)
		if len(c.watchers[service]) == 0 {
			delete(c.watchers, service)
		}
		close(w.ch)
	}
}

func (c *Client) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// notifyAbsentLocked sends an absent view to watchers that have seen
// nothing yet of a service the registry does not have.
func (c *Client) notifyAbsentLocked() {
	for name, ws := range c.watchers {
		if c.pub[name] != nil {
			continue
		}
		for w := range ws {
			if w.last == nil {
				w.offer(absent(name, c.rev))
			}
		}
	}
}
