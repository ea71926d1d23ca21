package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// floorPrefix is the election the etcd floor runs, outside understudy's keyspace.
const floorPrefix = "/understudy-bench/floor/"

// observation is one leader value Observe reported, stamped on arrival.
type observation struct {
	value string
	at    time.Time
}

// etcdFloor measures what a handover costs on etcd alone, with etcd's own
// election recipe on the same member: the leader resigns while the other
// candidate is already campaigning, and an observer reports the new leader.
// Each run times Resign → Observe reporting the waiting candidate; then the
// roles swap. warm runs go unmeasured first.
func etcdFloor(ctx context.Context, etcdURL string, warm, runs int) (_ []time.Duration, err error) {
	// Three clients, as three hosts would have: the two candidates and the observer.
	var clis [3]*clientv3.Client
	var sess [3]*concurrency.Session
	defer func() {
		for i := range clis {
			if sess[i] != nil {
				err = errors.Join(err, sess[i].Close()) // revokes: the election keys go
			}
			if clis[i] != nil {
				_ = clis[i].Close()
			}
		}
	}()
	for i := range clis {
		if clis[i], err = clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
			return nil, err
		}
		if sess[i], err = concurrency.NewSession(clis[i], concurrency.WithTTL(int(failoverTTL/time.Second))); err != nil {
			return nil, err
		}
	}
	names := [2]string{"a", "b"}
	elections := [2]*concurrency.Election{concurrency.NewElection(sess[0], floorPrefix), concurrency.NewElection(sess[1], floorPrefix)}

	octx, stopObserving := context.WithCancel(ctx)
	observed := make(chan observation, 16)
	observerDone := make(chan struct{})
	go func() {
		defer close(observerDone)
		for resp := range concurrency.NewElection(sess[2], floorPrefix).Observe(octx) {
			o := observation{value: string(resp.Kvs[0].Value), at: time.Now()}
			select {
			case observed <- o:
			case <-octx.Done():
				return
			}
		}
	}()
	defer func() { stopObserving(); <-observerDone }()

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = elections[0].Campaign(cctx, "a-0")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("first campaign: %w", err)
	}
	var out []time.Duration
	leader := 0
	for i := range warm + runs {
		next := 1 - leader
		want := fmt.Sprintf("%s-%d", names[next], i+1)
		d, err := floorRun(ctx, clis[2], elections[leader], elections[next], want, observed)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		if i >= warm {
			out = append(out, d)
		}
		leader = next
	}
	return out, nil
}

// floorRun has candidate campaign in the background with value want, waits
// until its key is in place, then times leader's Resign until the observer
// reports want.
func floorRun(ctx context.Context, cli *clientv3.Client, leader, candidate *concurrency.Election, want string, observed <-chan observation) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	campaigned := make(chan error, 1)
	go func() { campaigned <- candidate.Campaign(ctx, want) }()
	// Both keys present: the candidate waits behind the leader.
	for {
		resp, err := cli.Get(ctx, floorPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return 0, fmt.Errorf("waiting for the candidate's key: %w", err)
		}
		if resp.Count == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t0 := time.Now()
	if err := leader.Resign(ctx); err != nil {
		return 0, fmt.Errorf("resign: %w", err)
	}
	var d time.Duration
	for seen := false; !seen; {
		select {
		case o := <-observed:
			seen, d = o.value == want, o.at.Sub(t0)
		case <-ctx.Done():
			return 0, fmt.Errorf("observer never reported %s: %w", want, ctx.Err())
		}
	}
	if err := <-campaigned; err != nil {
		return 0, fmt.Errorf("campaign: %w", err)
	}
	return d, nil
}
