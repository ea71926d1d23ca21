// Package resolver is a gRPC name resolver for services in the understudy
// registry: a program dials
//
//	understudy:///postgres?role=primary
//
// and its channel follows the primary of postgres through every failover,
// with no code of its own. The resolver reads a registry client's cache
// (package client), so any number of channels share one Watch stream.
//
// Targets are understudy:///SERVICE[?role=ROLE] where ROLE is
//
//	primary  the acting primary only; no address while there is none
//	standby  the healthy instances that are not the primary
//	any      every healthy instance
//
// Without a role a primary-mode service resolves to its primary and a pool
// to every healthy member. Addresses are updated on every change of the
// service's view.
package resolver
