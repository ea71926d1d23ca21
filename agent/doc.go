// Package agent is what runs on every host: it health-checks the host's
// services with rise/fall smoothing and registers the host and each service
// instance in etcd under one lease, so that everything the host published
// vanishes when the host does. A graceful stop revokes the lease (instances
// vanish at once); a crash lets it expire after the TTL.
package agent
