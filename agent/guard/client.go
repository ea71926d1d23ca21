package guard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// spawnWait is how long Ensure waits for a guard it started to answer.
const spawnWait = 3 * time.Second

// Client talks to a guard over one connection. It is safe for concurrent
// use (calls take turns). A connection that broke is redialled once, within
// the same call. Every call honours its ctx: a deadline bounds the dial, the
// write and the read, and a cancelled ctx abandons the call (the connection
// is then closed, as its answer could still come).
type Client struct {
	socket string
	turn   chan struct{} // one call at a time on the connection
	closed bool          // under turn
	conn   net.Conn
	r      *bufio.Reader
}

// Dial connects to the guard on socket.
func Dial(ctx context.Context, socket string) (*Client, error) {
	c := &Client{socket: socket, turn: make(chan struct{}, 1)}
	if err := c.dial(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Ensure dials the guard on socket and, if nobody answers, starts spawn
// (e.g. [/usr/bin/understudy guard --socket SOCKET]) in a session of its own,
// so that it outlives the caller, SIGKILL included, with stdin /dev/null and
// its output appended to socket+".log"; then it dials until the guard
// answers, for up to 3 s. Two callers racing are fine: the second guard
// finds the first one's lock and exits.
//
// Under systemd, a guard started this way still lives in the caller's
// cgroup: the caller's unit needs KillMode=process, or the guard a unit of
// its own.
func Ensure(ctx context.Context, socket string, spawn []string, log *slog.Logger) (*Client, error) {
	if c, err := Dial(ctx, socket); err == nil || !nobodyAnswers(err) {
		return c, err
	}
	if len(spawn) == 0 {
		return nil, errors.New("guard: nobody answers and no command to start one")
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	out, err := os.OpenFile(socket+".log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	cmd := exec.Command(spawn[0], spawn[1:]...)
	cmd.Stdout, cmd.Stderr = out, out // stdin nil: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	out.Close()
	if err != nil {
		return nil, fmt.Errorf("guard: starting %s: %w", spawn[0], err)
	}
	log.Info("guard: started", "pid", cmd.Process.Pid, "socket", socket, "log", socket+".log")
	exited := make(chan error, 1)
	// Reaps the guard should it exit before the caller does.
	go func() {
		err := cmd.Wait()
		exited <- err
		log.Warn("guard: exited", "pid", cmd.Process.Pid, "err", err, "log", socket+".log")
	}()

	ctx, cancel := context.WithTimeout(ctx, spawnWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := Dial(ctx, socket)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("guard: started %s, not answering on %s: %w (see %s.log)", spawn[0], socket, err, socket)
		case werr := <-exited:
			// It may have lost a race with another guard, now answering.
			if c, err := Dial(ctx, socket); err == nil {
				return c, nil
			}
			return nil, fmt.Errorf("guard: %s exited: %v (see %s.log)", spawn[0], werr, socket)
		case <-tick.C:
		}
	}
}

// nobodyAnswers says whether a dial error means that no guard runs.
func nobodyAnswers(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// Arm gives the guard a service's fence point: a.FenceIn from now. The time
// the call takes before the request is sent is taken off, so that the fence
// point is never later than meant.
func (c *Client) Arm(ctx context.Context, a Arm) error {
	start := time.Now()
	_, err := c.call(ctx, func() request {
		fence := a.FenceIn - time.Since(start)
		var at int64
		if m := monoNow(); m > 0 {
			at = int64(m + fence)
		}
		return request{
			Op: opArm, Service: a.Service, Epoch: a.Epoch, FenceInMS: fence.Milliseconds(), FenceAtMonoNS: at,
			Demote: a.Demote, Env: a.Env, TimeoutMS: a.Timeout.Milliseconds(),
		}
	})
	return err
}

// Disarm tells the guard that the agent demoted service itself at epoch.
func (c *Client) Disarm(ctx context.Context, service string, epoch int64) error {
	_, err := c.call(ctx, func() request { return request{Op: opDisarm, Service: service, Epoch: epoch} })
	return err
}

// Status lists what the guard knows of every service, by name.
func (c *Client) Status(ctx context.Context) ([]ServiceStatus, error) {
	resp, err := c.call(ctx, func() request { return request{Op: opStatus} })
	if err != nil {
		return nil, err
	}
	out := make([]ServiceStatus, 0, len(resp.Services))
	for _, s := range resp.Services {
		out = append(out, fromJSON(s))
	}
	return out, nil
}

// Close closes the connection. It leaves the guard's fence points as they
// are. Idempotent.
func (c *Client) Close() error {
	c.turn <- struct{}{}
	defer func() { <-c.turn }()
	c.closed = true
	return c.drop()
}

// call sends the request build makes (built anew for a retry) and reads the
// answer, redialling once if a connection used before turns out broken.
func (c *Client) call(ctx context.Context, build func() request) (response, error) {
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return response{}, fmt.Errorf("guard: %w", ctx.Err())
	}
	defer func() { <-c.turn }()
	if c.closed {
		return response{}, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if fresh {
			if err := c.dial(ctx); err != nil {
				return response{}, err
			}
		}
		resp, err := c.roundTrip(ctx, build())
		if err == nil {
			if !resp.OK {
				if sentinel := codes[resp.Code]; sentinel != nil {
					return resp, fmt.Errorf("guard: %w: %s", sentinel, resp.Error)
				}
				return resp, fmt.Errorf("guard: %s", resp.Error)
			}
			return resp, nil
		}
		_ = c.drop()
		if fresh || attempt > 0 || ctx.Err() != nil {
			return response{}, err
		}
	}
}

func (c *Client) dial(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return fmt.Errorf("guard: %w", err)
	}
	c.conn, c.r = conn, bufio.NewReader(conn)
	return nil
}

func (c *Client) drop() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.r = nil, nil
	return err
}

func (c *Client) roundTrip(ctx context.Context, req request) (response, error) {
	conn := c.conn
	dl, hasDeadline := ctx.Deadline() // zero: none
	if err := conn.SetDeadline(dl); err != nil {
		return response{}, fmt.Errorf("guard: %w", err)
	}
	// A cancelled ctx without a deadline interrupts the I/O too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	resp, err := c.exchange(req)
	if err != nil {
		// The connection's deadline can pass a moment before ctx says so.
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("guard: %w", ctxErr)
		} else if hasDeadline && !time.Now().Before(dl) {
			err = fmt.Errorf("guard: %w", context.DeadlineExceeded)
		}
	}
	if !stop() {
		// The deadline was set in the past, or is being: this connection
		// cannot be trusted with the next call.
		_ = c.drop()
	}
	return resp, err
}

func (c *Client) exchange(req request) (response, error) {
	line, err := json.Marshal(req)
	if err != nil {
		return response{}, fmt.Errorf("guard: %w", err)
	}
	if _, err := c.conn.Write(append(line, '\n')); err != nil {
		return response{}, fmt.Errorf("guard: %w", err)
	}
	line, err = c.r.ReadBytes('\n')
	if err != nil {
		return response{}, fmt.Errorf("guard: %w", err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return response{}, fmt.Errorf("guard: answer: %w", err)
	}
	return resp, nil
}
