package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/understudy-dev/understudy/agent"
	"github.com/understudy-dev/understudy/agent/demoservice"
)

// The primary-mode service the failover bench moves around, and the agent
// settings it runs with.
const (
	failoverService = "db"
	failoverTTL     = 2 * time.Second
	checkInterval   = 50 * time.Millisecond
	electionStep    = 50 * time.Millisecond
	// keepAlivePeriod is how often an agent renews its lease (TTL/3).
	keepAlivePeriod = failoverTTL / 3
)

// benchAgent is one host of the failover bench: an in-process agent whose
// etcd traffic goes through its own proxy (so that it can be cut off as if
// crashed), with a demo service as its instance of failoverService.
type benchAgent struct {
	host   string
	svc    *demoservice.Service
	proxy  *proxy
	agent  *agent.Agent
	cancel context.CancelFunc
	done   chan struct{}
}

// startAgent starts host's demo service, proxy and agent. The agent has no
// hooks (each succeeds at once), a tcp check on the demo service and the
// bench's TTL and election step.
func startAgent(host, etcdURL string, log *slog.Logger) (_ *benchAgent, err error) {
	b := &benchAgent{host: host, done: make(chan struct{})}
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	if b.svc, err = demoservice.Start(host, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if b.proxy, err = newProxy(strings.TrimPrefix(etcdURL, "http://")); err != nil {
		return nil, err
	}
	rise, fall := 1, 1
	cfg := &agent.Config{
		Host: host, Zone: "bench", EtcdEndpoints: []string{b.proxy.url()},
		TTL: agent.D(failoverTTL), HTTPAddr: "127.0.0.1:0", ElectionStep: agent.D(electionStep),
		Services: []agent.ServiceConfig{{
			Name: failoverService, Mode: agent.ModePrimary, Address: b.svc.Addr(),
			Hooks: agent.HooksConfig{Demote: []string{"true"}},
			Check: agent.CheckConfig{TCP: "self", Interval: agent.D(checkInterval), Rise: &rise, Fall: &fall},
		}},
	}
	cfg.SetDefaults()
	if b.agent, err = agent.New(cfg, agent.Options{Logger: log}); err != nil {
		return nil, fmt.Errorf("agent %s: %w", host, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() {
		defer close(b.done)
		_ = b.agent.Run(ctx)
	}()
	return b, nil
}

// stop ends the agent gracefully (it resigns and revokes its lease, so the
// proxy is healed first), then its proxy and service. It also cleans up
// after a partial start.
func (b *benchAgent) stop() {
	if b.proxy != nil {
		b.proxy.heal()
	}
	if b.cancel != nil {
		b.cancel()
		<-b.done
	}
	if b.proxy != nil {
		b.proxy.close()
	}
	if b.svc != nil {
		b.svc.Close()
	}
}
