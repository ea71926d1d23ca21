// Package e2e holds the multi-host tests (build tag e2e, run by make e2e):
// five hosts as containers in three zones (deploy/compose), each with an
// etcd member, an agent and a demo service, driven with the docker CLI.
// The suite checks the topology the servers report, then runs the chaos
// runner (package e2e/chaos) once over every fault kind. make chaos runs
// longer seeded series with the same runner.
//
// Subpackages: cluster drives the containers, chaos injects faults and
// checks invariants, kvdemo is the fencing-aware demo database, supervise
// is the init process of a host image, cmd/e2ehost and
// cmd/understudy-chaos are their commands.
package e2e
