// Package client is the Go client of the understudy registry: it keeps one
// Watch stream open to one of several registry servers, holds the latest
// view of every watched service in a local cache, and answers "where is the
// primary of postgres?" or "which memcached members are healthy?" from that
// cache without a network round trip.
//
// The client is statically stable: when the server it watches goes away it
// keeps serving the views it has, each marked stale (View.Stale), moves to
// another server within moments and resumes from the last revision it saw.
// A registry outage never empties or loses its views; they are only
// replaced by what a server sends.
//
// Views handed out by the client are shared and must not be modified.
//
// The resolver package builds on this client so that gRPC programs can dial
// "understudy:///postgres?role=primary" and follow failovers.
package client
