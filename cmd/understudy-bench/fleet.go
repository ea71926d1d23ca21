package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// The one record the bench rewrites: an instance of service benchService on
// host benchHost whose check_output carries the write's sequence number, so
// that a subscriber can tell which write a view reflects.
const (
	benchService = "bench"
	benchHost    = "bench-host"
	seqPrefix    = "seq "
)

// writer puts the bench record straight into etcd, as an agent would.
type writer struct {
	cli *clientv3.Client
	key string
}

func newWriter(endpoint string) (*writer, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &writer{cli: cli, key: registry.InstanceKey(benchHost, benchService)}, nil
}

// put writes the record with sequence number seq and returns the time taken
// just before the Put, after encoding, so that t0 is the moment etcd is asked.
func (w *writer) put(ctx context.Context, seq int64) (t0 time.Time, err error) {
	val, err := registry.Encode(&pb.Instance{
		Host:        benchHost,
		Service:     benchService,
		Zone:        "bench",
		Address:     "127.0.0.1:1",
		Mode:        pb.Mode_MODE_POOL,
		Health:      pb.Health_HEALTH_PASSING,
		CheckOutput: seqPrefix + strconv.FormatInt(seq, 10),
	})
	if err != nil {
		return t0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	t0 = time.Now()
	if _, err := w.cli.Put(ctx, w.key, string(val)); err != nil {
		return t0, fmt.Errorf("etcd put: %w", err)
	}
	return t0, nil
}

func (w *writer) close() { _ = w.cli.Close() }

// seqOf returns the sequence number a view carries, if it is the bench
// service's view with the bench record in it.
func seqOf(v *pb.View) (int64, bool) {
	if v.GetService() != benchService {
		return 0, false
	}
	for _, in := range v.GetInstances() {
		if in.GetHost() != benchHost {
			continue
		}
		s, ok := strings.CutPrefix(in.GetCheckOutput(), seqPrefix)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// waitForView waits until the server serves the bench record, so that the
// memory baseline is taken with the view in place.
func waitForView(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	cli := pb.NewRegistryServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		resp, err := cli.GetService(ctx, &pb.GetServiceRequest{Service: benchService})
		if err == nil {
			if _, ok := seqOf(resp.GetView()); ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server never showed the bench record: last error %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// fleet is n Watch streams on the bench service, spread over a few gRPC
// connections (one per perConn streams) so that a thousand subscribers do
// not need a thousand sockets.
type fleet struct {
	base   time.Time // receive times are nanoseconds after base, on the monotonic clock
	ctx    context.Context
	cancel context.CancelFunc
	conns  []*grpc.ClientConn
	subs   []*subscriber
	wg     sync.WaitGroup
	round  atomic.Pointer[round] // the write being waited for; nil between writes
	failed chan error            // the first stream failure, capacity 1
}

// subscriber is what the fleet keeps per stream. Only its reader goroutine
// writes it; atomics let the measuring side look without a lock.
type subscriber struct {
	seen atomic.Int64 // highest sequence number received
}

// round follows one write until every subscriber has it. Readers update it
// with atomics only, so recording a receive never blocks a stream reader.
type round struct {
	seq     int64
	missing atomic.Int64 // subscribers yet to receive seq
	first   atomic.Int64 // earliest receive, ns after fleet.base
	last    atomic.Int64 // latest receive, ns after fleet.base
	done    chan struct{}
}

func newRound(seq int64, n int) *round {
	r := &round{seq: seq, done: make(chan struct{})}
	r.missing.Store(int64(n))
	r.first.Store(math.MaxInt64)
	return r
}

// received records one subscriber's receive at time at.
func (r *round) received(at int64) {
	for cur := r.last.Load(); at > cur && !r.last.CompareAndSwap(cur, at); cur = r.last.Load() {
	}
	for cur := r.first.Load(); at < cur && !r.first.CompareAndSwap(cur, at); cur = r.first.Load() {
	}
	if r.missing.Add(-1) == 0 {
		close(r.done)
	}
}

// attach opens n Watch streams and returns once each has received its
// snapshot, so that the server holds every subscription when it returns.
// Streams live until close or until ctx is done.
func attach(ctx context.Context, addr string, n, perConn int, timeout time.Duration) (*fleet, error) {
	fctx, cancel := context.WithCancel(ctx)
	f := &fleet{base: time.Now(), ctx: fctx, cancel: cancel, failed: make(chan error, 1)}
	for range (n + perConn - 1) / perConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			f.close()
			return nil, err
		}
		f.conns = append(f.conns, conn)
	}

	// A stuck attach would otherwise wait for the whole run's timeout:
	// cancelling the fleet ends every pending snapshot read.
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); cancel() })
	defer timer.Stop()

	// Open streams a few dozen at a time: fast, without a thundering herd
	// of a thousand simultaneous stream setups on a small machine.
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	var opening sync.WaitGroup
	for i := range n {
		s := &subscriber{}
		f.subs = append(f.subs, s)
		client := pb.NewRegistryServiceClient(f.conns[i/perConn])
		sem <- struct{}{}
		opening.Go(func() {
			defer func() { <-sem }()
			if err := f.open(client, s); err != nil {
				errs <- err
			}
		})
	}
	opening.Wait()
	close(errs)
	if err := <-errs; err != nil {
		f.close()
		if timedOut.Load() {
			return nil, fmt.Errorf("not every subscriber got its snapshot within %v", timeout)
		}
		return nil, err
	}
	return f, nil
}

// open starts one Watch stream, waits for its snapshot and leaves a reader
// goroutine behind.
func (f *fleet) open(client pb.RegistryServiceClient, s *subscriber) error {
	stream, err := client.Watch(f.ctx, &pb.WatchRequest{Services: []string{benchService}})
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("watch snapshot: %w", err)
	}
	if !first.GetSnapshot() {
		return fmt.Errorf("first watch message is not a snapshot: %v", first)
	}
	for _, v := range first.GetViews() {
		if seq, ok := seqOf(v); ok {
			s.seen.Store(seq)
		}
	}
	f.wg.Go(func() { f.read(stream, s) })
	return nil
}

// read receives one stream's messages until the fleet closes. It only
// stamps the time and updates atomics: the measurement never slows the
// stream it measures.
func (f *fleet) read(stream pb.RegistryService_WatchClient, s *subscriber) {
	for {
		msg, err := stream.Recv()
		if err != nil {
			if f.ctx.Err() == nil {
				select {
				case f.failed <- fmt.Errorf("a watch stream ended: %w", err):
				default:
				}
			}
			return
		}
		at := int64(time.Since(f.base))
		for _, v := range msg.GetViews() {
			if seq, ok := seqOf(v); ok {
				f.observe(s, seq, at)
			}
		}
	}
}

// observe counts a receive of seq towards the current round, once per
// subscriber: a view sent again (say, with a stale mark) is not a new receive.
func (f *fleet) observe(s *subscriber, seq, at int64) {
	if seq <= s.seen.Load() {
		return
	}
	s.seen.Store(seq)
	if r := f.round.Load(); r != nil && r.seq == seq {
		r.received(at)
	}
}

// sample is one write's figures.
type sample struct {
	last  time.Duration // write → last subscriber
	first time.Duration // write → first subscriber
	put   time.Duration // etcd Put round trip
}

// measure writes sequence number seq and waits until every subscriber has
// received it.
func (f *fleet) measure(ctx context.Context, w *writer, seq int64, timeout time.Duration) (sample, error) {
	// The round is in place before the write, so no receive can miss it.
	r := newRound(seq, len(f.subs))
	f.round.Store(r)
	defer f.round.Store(nil)
	t0, err := w.put(ctx, seq)
	if err != nil {
		return sample{}, err
	}
	put := time.Since(t0)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-r.done:
	case err := <-f.failed:
		return sample{}, err
	case <-ctx.Done():
		return sample{}, ctx.Err()
	case <-timer.C:
		return sample{}, fmt.Errorf("%d of %d subscribers had not received it after %v", r.missing.Load(), len(f.subs), timeout)
	}
	start := int64(t0.Sub(f.base))
	return sample{
		last:  time.Duration(r.last.Load() - start),
		first: time.Duration(r.first.Load() - start),
		put:   put,
	}, nil
}

// close ends every stream and connection and waits for the readers.
func (f *fleet) close() {
	f.cancel()
	f.wg.Wait()
	for _, c := range f.conns {
		_ = c.Close()
	}
}
