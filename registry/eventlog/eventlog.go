// Package eventlog keeps the recent history of each service's primary role
// in etcd, at /understudy/v1/events/<service>/<revision>: promotions,
// demotions, fencing, and operator requests. Every event is bound to a lease
// of its own that expires after Retention, so history is pruned by etcd
// without a janitor. Events are rare (a few per failover), so one lease per
// event costs little and keeps retention exact.
package eventlog

import (
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// Retention is how long an event is kept.
const Retention = 7 * 24 * time.Hour

// Write stores ev as the event of the change made at etcd revision rev (the
// revision of the transaction that promoted, demoted, paused...), under a
// new lease of Retention. The stored event carries Revision = rev and, when
// ev.At is unset, the current time; ev itself is not modified.
//
// rev names the event, so two events of one service at the same revision
// overwrite each other: write at most one per transaction.
func Write(ctx context.Context, cli *clientv3.Client, ev *pb.Event, rev int64) error {
	if err := registry.ValidateName("service", ev.GetService()); err != nil {
		return fmt.Errorf("event: %w", err)
	}
	if rev <= 0 {
		return fmt.Errorf("event of %s: revision %d is not positive", ev.GetService(), rev)
	}
	ev = proto.CloneOf(ev)
	ev.Revision = rev
	if ev.At == nil {
		ev.At = timestamppb.Now()
	}
	value, err := registry.Encode(ev)
	if err != nil {
		return err
	}
	lease, err := cli.Grant(ctx, int64(Retention/time.Second))
	if err != nil {
		return fmt.Errorf("event of %s: lease: %w", ev.GetService(), err)
	}
	key := registry.EventKey(ev.GetService(), rev)
	if _, err := cli.Put(ctx, key, string(value), clientv3.WithLease(lease.ID)); err != nil {
		// Do not leave a week-long lease behind with nothing on it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_, _ = cli.Revoke(rctx, lease.ID)
		cancel()
		return fmt.Errorf("event %s: %w", key, err)
	}
	return nil
}

// List returns the stored events of service, oldest first: all of them when
// limit <= 0, otherwise the newest limit. Values that cannot be decoded, and
// keys that are not event keys, are skipped. The read is linearizable and
// sees one revision of the keyspace.
func List(ctx context.Context, cli *clientv3.Client, service string, limit int) ([]*pb.Event, error) {
	if err := registry.ValidateName("service", service); err != nil {
		return nil, err
	}
	prefix := registry.EventsPrefix(service)
	if limit <= 0 {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return nil, fmt.Errorf("events of %s: %w", service, err)
		}
		var out []*pb.Event
		for _, kv := range resp.Kvs {
			if ev, ok := decode(service, kv.Key, kv.Value); ok {
				out = append(out, ev)
			}
		}
		return out, nil
	}
	// Newest first, a page at a time, until limit readable events are found
	// or none are left; every page reads the first page's revision.
	var (
		out []*pb.Event
		end = clientv3.GetPrefixRangeEnd(prefix)
		rev int64
	)
	for len(out) < limit {
		opts := []clientv3.OpOption{
			clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
			clientv3.WithLimit(int64(limit - len(out))),
		}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, prefix, opts...)
		if err != nil {
			return nil, fmt.Errorf("events of %s: %w", service, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if ev, ok := decode(service, kv.Key, kv.Value); ok {
				out = append(out, ev)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive: the next page ends before it
	}
	slices.Reverse(out)
	return out, nil
}

// decode reads one stored event. The key is authoritative for the service
// and the revision.
func decode(service string, key, value []byte) (*pb.Event, bool) {
	k, err := registry.ParseKey(string(key))
	if err != nil || k.Kind != registry.KindEvent || k.Service != service {
		return nil, false
	}
	ev := &pb.Event{}
	if err := registry.Decode(value, ev); err != nil {
		return nil, false
	}
	ev.Service, ev.Revision = k.Service, k.Revision
	return ev, true
}
