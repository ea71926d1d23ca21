package main

import (
	"path/filepath"
	"testing"

	"github.com/understudy-dev/understudy/agent"
)

// Every example config shipped in deploy/examples must load.
func TestExampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../deploy/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	for _, f := range files {
		if _, err := agent.LoadConfig(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
