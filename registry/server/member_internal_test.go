package server

import (
	"testing"

	"go.etcd.io/etcd/server/v3/features"
)

func TestEmbedConfigGuardsLeases(t *testing.T) {
	c := DefaultMemberConfig()
	c.DataDir = t.TempDir()
	cfg, _, err := c.embedConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ServerFeatureGate.Enabled(features.LeaseCheckpoint) {
		t.Error("lease checkpoints are off")
	}
	if !cfg.PreVote {
		t.Error("pre-vote is off")
	}
}
