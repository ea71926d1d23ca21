// Package registry holds understudy's data model as stored in etcd: the
// keyspace under /understudy/v1/, the protojson codec for its values, name
// validation, and the pure function that turns the records of one service
// into a View. It does no I/O; the server, agent and elector build on it.
package registry
