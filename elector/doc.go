// Package elector will hold leadership of one primary-mode service on one
// host: the ranked race for the lease-bound leader key, epochs as fencing
// tokens and self-fencing before the lease deadline (see the Election section
// of the design). Primary mode is not available yet: the agent rejects
// `mode: primary` in its configuration until this package lands.
package elector
