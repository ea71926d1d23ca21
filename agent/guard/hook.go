package guard

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
)

// runHook runs j's demote argv, without a shell, bounded by j.timeout.
func runHook(j job, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, j.demote[0], j.demote[1:]...)
	// Later entries win: the guard's own say what it is doing and why.
	cmd.Env = append(append(os.Environ(), j.env...),
		"UNDERSTUDY_SERVICE="+j.service,
		"UNDERSTUDY_EPOCH="+strconv.FormatInt(j.epoch, 10),
		"UNDERSTUDY_ROLE=standby",
		"UNDERSTUDY_REASON="+j.reason,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A hook's children that keep its output open must not hold the guard.
	cmd.WaitDelay = 500 * time.Millisecond
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if len(text) > 4096 {
		text = "…" + text[len(text)-4096:]
	}
	took := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("demote hook stopped after %v: %w", j.timeout, ctx.Err())
		} else {
			err = fmt.Errorf("demote hook: %w", err)
		}
		log.Warn("guard: demote failed", "service", j.service, "epoch", j.epoch, "err", err, "output", text, "took", took)
		return err
	}
	log.Warn("guard: demoted", "service", j.service, "epoch", j.epoch, "reason", j.reason, "output", text, "took", took)
	return nil
}
