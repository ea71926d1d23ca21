package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"time"
)

// Checker runs one health check. It returns a short human-readable output
// and a non-nil error when the check fails.
type Checker interface {
	Check(ctx context.Context) (output string, err error)
}

// NewChecker builds the checker a CheckConfig describes. address is the
// service's expanded address, used by a tcp check of "self".
func NewChecker(c CheckConfig, address string) Checker {
	switch {
	case len(c.Exec) > 0:
		return execCheck{argv: c.Exec}
	case c.HTTP != "":
		return httpCheck{url: c.HTTP, client: &http.Client{}}
	case c.TCP == "self" || c.TCP == "":
		return tcpCheck{addr: address}
	default:
		return tcpCheck{addr: c.TCP}
	}
}

type tcpCheck struct{ addr string }

func (t tcpCheck) Check(ctx context.Context) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return "", err
	}
	_ = conn.Close()
	return "tcp connect " + t.addr + ": ok", nil
}

type httpCheck struct {
	url    string
	client *http.Client
}

func (h httpCheck) Check(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return "", err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	out := fmt.Sprintf("GET %s: %s", h.url, resp.Status)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return out, fmt.Errorf("%s", out)
	}
	return out, nil
}

type execCheck struct{ argv []string }

func (e execCheck) Check(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, e.argv[0], e.argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // do not wait for grandchildren holding the pipe
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out: %w", ctx.Err())
		}
		if text != "" {
			return text, fmt.Errorf("%w: %s", err, text)
		}
		return text, err
	}
	return text, nil
}

// Smoother turns raw check results into a health state with rise/fall
// hysteresis: Rise passes in a row turn a failing instance passing, Fall
// failures in a row turn a passing one failing. A first pass decides the
// initial state at once, so a starting agent registers real health without
// waiting Rise intervals; a first failure waits for Fall failures in a row,
// as a passing instance would, because a service started alongside its
// agent (a reboot) may not listen yet, and a primary that resumed its role
// must not resign over that.
type Smoother struct {
	Rise, Fall int
	known      bool
	passing    bool
	streak     int // consecutive results disagreeing with the current state
}

// Known reports whether the results so far decided a state.
func (s *Smoother) Known() bool { return s.known }

// Observe records one result and reports the state after it and whether it changed.
func (s *Smoother) Observe(pass bool) (passing, changed bool) {
	if !s.known {
		if !pass {
			if s.streak++; s.streak < s.Fall {
				return false, false
			}
		}
		s.known, s.passing, s.streak = true, pass, 0
		return pass, true
	}
	if pass == s.passing {
		s.streak = 0
		return s.passing, false
	}
	s.streak++
	need := s.Fall
	if pass {
		need = s.Rise
	}
	if s.streak >= need {
		s.passing, s.streak = pass, 0
		return s.passing, true
	}
	return s.passing, false
}
