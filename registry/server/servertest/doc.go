// Package servertest starts real registry servers, each with an embedded etcd
// member, on free loopback ports for integration tests, and provides a TCP
// proxy that can cut a client off from etcd (blackhole) to inject network
// faults. Nothing here is a mock: every cluster is real etcd.
package servertest
