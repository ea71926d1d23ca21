// Package feed follows the registry's Watch stream for programs that act on
// every change (understudy watch, understudy render): one stream at a time,
// moving on to the next registry server when one fails, and resuming from
// the last revision delivered so that no change is missed and no older state
// follows a newer one.
//
// It keeps no state beyond that revision; Views is the latest view of each
// service for a follower that needs them all.
package feed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// ErrNoRegistry means every address was tried Config.Rounds times in a row
// and none answered.
var ErrNoRegistry = errors.New("no registry answered")

// Config says which registry servers to follow and what to watch.
type Config struct {
	// Addrs are registry gRPC addresses (host:port), tried in turn.
	Addrs []string
	// Services to watch; every service when empty.
	Services []string
	// RetryPause is the pause after each round of addresses in which one
	// failed, so that a registry that is down is not hammered. Default 1s.
	RetryPause time.Duration
	// Rounds, when positive, ends Follow with ErrNoRegistry after this many
	// rounds in a row in which no address answered. Zero tries forever.
	Rounds int
	// OnError, when set, is told about each address that could not be
	// reached or whose stream broke off, and the address tried next.
	OnError func(addr string, err error, next string)
	// DialOptions replace the default (plaintext) for each connection.
	DialOptions []grpc.DialOption
}

// Follow watches the registry until ctx is done, calling handle with every
// message in order, on the calling goroutine. The first message is a full
// snapshot (WatchResponse.Snapshot); after a reconnect the stream resumes
// from the last revision handled, so the next message is either the views
// changed since or, when the server no longer knows them, a new snapshot.
//
// It returns nil when ctx is done; ErrNoRegistry (with each address's
// error) after cfg.Rounds rounds without an answer; and the registry's
// error, with code InvalidArgument, when it rejects the request as
// malformed (a bad service name), which no retry can mend.
func Follow(ctx context.Context, cfg Config, handle func(*pb.WatchResponse)) error {
	if len(cfg.Addrs) == 0 {
		return errors.New("feed: no registry address")
	}
	if cfg.RetryPause <= 0 {
		cfg.RetryPause = time.Second
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	var (
		rev    int64
		failed []error // of the addresses tried since the last answer
	)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		addr := cfg.Addrs[attempt%len(cfg.Addrs)]
		answered, err := followOnce(ctx, cfg, addr, &rev, handle)
		if ctx.Err() != nil {
			return nil
		}
		if status.Code(err) == codes.InvalidArgument {
			return err
		}
		if answered {
			failed = nil
		}
		failed = append(failed, fmt.Errorf("%s: %s", addr, status.Convert(err).Message()))
		if cfg.Rounds > 0 && len(failed) >= cfg.Rounds*len(cfg.Addrs) {
			return fmt.Errorf("%w: %w", ErrNoRegistry, errors.Join(failed[len(failed)-len(cfg.Addrs):]...))
		}
		next := cfg.Addrs[(attempt+1)%len(cfg.Addrs)]
		if cfg.OnError != nil {
			cfg.OnError(addr, err, next)
		}
		if (attempt+1)%len(cfg.Addrs) == 0 {
			sleep(ctx, cfg.RetryPause) // back at the first address: pause before another round
		}
	}
	return nil
}

// followOnce runs one stream to addr until it fails; answered says whether
// it delivered at least one message.
func followOnce(ctx context.Context, cfg Config, addr string, rev *int64, handle func(*pb.WatchResponse)) (answered bool, err error) {
	conn, err := grpc.NewClient(addr, cfg.DialOptions...)
	if err != nil {
		return false, status.Errorf(codes.InvalidArgument, "registry address %q: %v", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewRegistryServiceClient(conn).Watch(ctx, &pb.WatchRequest{Services: cfg.Services, FromRevision: *rev})
	if err != nil {
		return false, err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return answered, err
		}
		answered = true
		handle(m)
		*rev = max(*rev, m.GetRevision())
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

// Views is the latest view of each service, kept from watch messages: a
// snapshot replaces everything, a later message replaces the views it
// carries, and a view with no instances (and no primary) removes its
// service. The zero value is empty and ready to use; it is not safe for
// concurrent use.
type Views struct {
	views map[string]*pb.View
	rev   int64
	have  bool
}

// Apply takes in one watch message.
func (v *Views) Apply(m *pb.WatchResponse) {
	if v.views == nil || m.GetSnapshot() {
		v.views = map[string]*pb.View{}
	}
	for _, view := range m.GetViews() {
		if len(view.GetInstances()) == 0 && view.GetPrimary() == nil {
			delete(v.views, view.GetService())
		} else {
			v.views[view.GetService()] = view
		}
	}
	v.rev = max(v.rev, m.GetRevision())
	v.have = v.have || m.GetSnapshot()
}

// Complete reports whether a snapshot has been applied: before one, Views
// knows only part of the registry (or nothing).
func (v *Views) Complete() bool { return v.have }

// Revision is the revision of the latest message applied.
func (v *Views) Revision() int64 { return v.rev }

// Get returns the view of service, nil when it has no instances.
func (v *Views) Get(service string) *pb.View { return v.views[service] }

// All returns every view, sorted by service.
func (v *Views) All() []*pb.View {
	out := make([]*pb.View, 0, len(v.views))
	for _, name := range slices.Sorted(maps.Keys(v.views)) {
		out = append(out, v.views[name])
	}
	return out
}
