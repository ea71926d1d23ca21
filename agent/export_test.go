package agent

// CurrentLease is the lease the agent serves under now; nil before the first.
func (a *Agent) CurrentLease() *Lease { return a.lease.Load() }

// EtcdEndpoints are the endpoints the agent's etcd client uses now.
func (a *Agent) EtcdEndpoints() []string { return a.cli.Endpoints() }
