package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/elector"
)

// A promote hook learns when it must have finished: UNDERSTUDY_DEADLINE
// (RFC 3339) and UNDERSTUDY_DEADLINE_MS, the promote window it was given.
func TestPromoteHookGetsItsDeadline(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	h := execHooks{cfg: HooksConfig{Promote: []string{"sh", "-c", "env > " + out}}, log: slog.New(slog.DiscardHandler)}
	deadline := time.Now().Add(3750 * time.Millisecond)
	if err := h.Promote(context.Background(), elector.Transition{Service: "db", Host: "h1", Role: "primary", Epoch: 7, Deadline: deadline}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	got, err := time.Parse(time.RFC3339Nano, env["UNDERSTUDY_DEADLINE"])
	if err != nil || !got.Equal(deadline.UTC().Round(0)) {
		t.Errorf("UNDERSTUDY_DEADLINE = %q (%v); want %v", env["UNDERSTUDY_DEADLINE"], err, deadline.UTC())
	}
	ms, err := strconv.Atoi(env["UNDERSTUDY_DEADLINE_MS"])
	if err != nil || ms <= 0 || ms > 3750 {
		t.Errorf("UNDERSTUDY_DEADLINE_MS = %q; want the window left, at most 3750", env["UNDERSTUDY_DEADLINE_MS"])
	}
	if env["UNDERSTUDY_EPOCH"] != "7" || env["UNDERSTUDY_ROLE"] != "primary" {
		t.Errorf("epoch %q role %q", env["UNDERSTUDY_EPOCH"], env["UNDERSTUDY_ROLE"])
	}
}
