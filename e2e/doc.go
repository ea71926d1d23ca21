// Package e2e will hold the multi-host tests: hosts as containers on one
// docker network per zone, with crashes, freezes and zone partitions injected
// by a chaos runner. Today's integration tests, with real embedded etcd
// members on loopback, live beside the packages they test.
package e2e
