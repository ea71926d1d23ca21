// Package server is the registry server: an optional embedded etcd member,
// a hub that keeps one etcd watch on the keyspace and fans view changes out
// to any number of subscribers, the RegistryService gRPC API, and an HTTP
// port for health, metrics and JSON.
package server
