// Package elector holds the primary role of one primary-mode service on one
// host. Healthy candidates race for the lease-bound leader key in ranked
// order (freshest first, then highest priority, then host name), each
// waiting rank × step before trying, so the best candidate takes over at
// once and the next only if the best is gone too. The winner's epoch is the
// leader key's create revision; it runs the promote hook and only then
// writes the primary record, in a transaction guarded by that revision.
//
// A primary demotes itself (demote hook, stop acting) before its lease can
// expire when renewals stop, even with etcd unreachable: the lease's
// deadline is the send time of the last answered keepalive plus the TTL,
// and etcd cannot expire the lease before it. So an old primary always stops
// before a new one can be elected.
package elector
