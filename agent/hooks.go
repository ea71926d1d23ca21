package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-dev/understudy/elector"
)

// execHooks runs a service's promote and demote commands.
type execHooks struct {
	cfg HooksConfig
	log *slog.Logger
}

func (h execHooks) Promote(ctx context.Context, t elector.Transition) error {
	return h.run(ctx, "promote", h.cfg.Promote, t)
}

func (h execHooks) Demote(ctx context.Context, t elector.Transition) error {
	return h.run(ctx, "demote", h.cfg.Demote, t)
}

// run executes argv with the transition in its environment. No command
// configured is a hook that succeeds at once.
func (h execHooks) run(ctx context.Context, name string, argv []string, t elector.Transition) error {
	if len(argv) == 0 {
		return nil
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"UNDERSTUDY_SERVICE="+t.Service,
		"UNDERSTUDY_HOST="+t.Host,
		"UNDERSTUDY_ROLE="+t.Role,
		"UNDERSTUDY_EPOCH="+strconv.FormatInt(t.Epoch, 10),
		"UNDERSTUDY_PREVIOUS_PRIMARY="+t.PreviousPrimary,
		"UNDERSTUDY_REASON="+t.Reason,
	)
	if !t.Deadline.IsZero() {
		cmd.Env = append(cmd.Env,
			"UNDERSTUDY_DEADLINE="+t.Deadline.UTC().Format(time.RFC3339Nano),
			"UNDERSTUDY_DEADLINE_MS="+strconv.FormatInt(max(0, time.Until(t.Deadline).Milliseconds()), 10))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 500 * time.Millisecond
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%s hook stopped: %w", name, ctx.Err())
		} else {
			err = fmt.Errorf("%s hook: %w", name, err)
		}
		h.log.Warn("agent: hook failed", "hook", name, "service", t.Service, "epoch", t.Epoch, "err", err, "output", text, "took", time.Since(start))
		return err
	}
	h.log.Info("agent: hook ran", "hook", name, "service", t.Service, "epoch", t.Epoch, "output", text, "took", time.Since(start))
	return nil
}
