package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// These tests run real `understudy agent` processes (each starting its own
// guard process) against a real 3-member cluster, with a service that never
// asks its agent anything: hooks set its role, and it "takes writes" from
// the first instant of its promote hook to the last of its demote hook.
// The hooks log those instants; the checker proves no two hosts' writable
// spans overlap, whatever is done to the agents.

const procTTL = 3 * time.Second

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// understudyBin builds this command once per test binary.
func understudyBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "understudy-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "understudy")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// hookScript is the hook of the service that never asks: it logs when the
// service may start taking writes (a promote starts) and when it surely
// stopped (a demote ended).
const hookScript = `#!/bin/sh
dir=$1
echo "$(date +%s.%N) $UNDERSTUDY_HOST $UNDERSTUDY_ROLE $UNDERSTUDY_EPOCH start $UNDERSTUDY_REASON" >> "$dir/../hooks.log"
if [ "$UNDERSTUDY_ROLE" = primary ]; then
	sleep "$(cat "$dir/../promote-sleep" 2>/dev/null || echo 0)"
fi
echo "$UNDERSTUDY_ROLE" > "$dir/role"
echo "$(date +%s.%N) $UNDERSTUDY_HOST $UNDERSTUDY_ROLE $UNDERSTUDY_EPOCH end" >> "$dir/../hooks.log"
`

type procHost struct {
	name, dir, config, socket string
	cmd                       *exec.Cmd
}

type procCluster struct {
	t     *testing.T
	bin   string
	dir   string
	etcd  *servertest.Cluster
	cli   *clientv3.Client
	hosts map[string]*procHost
}

func newProcCluster(t *testing.T, names ...string) *procCluster {
	t.Helper()
	bin := understudyBin(t)
	dir, err := os.MkdirTemp("", "fence") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	c := &procCluster{t: t, bin: bin, dir: dir, etcd: servertest.StartCluster(t, 3), hosts: map[string]*procHost{}}
	c.cli = c.etcd.Client(t)
	hook := filepath.Join(dir, "hook.sh")
	if err := os.WriteFile(hook, []byte(hookScript), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		h := &procHost{name: n, dir: filepath.Join(dir, n), socket: filepath.Join(dir, n+".sock")}
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		h.config = filepath.Join(h.dir, "agent.yaml")
		cfg := fmt.Sprintf(`host: %s
etcd_endpoints: [%s]
ttl: %s
http_addr: "off"
state_file: %s/state.json
guard: {socket: %s}
services:
  - name: db
    mode: primary
    address: 127.0.0.1:5432
    check: {exec: [sh, -c, "test ! -e %s/sick"], interval: 200ms, timeout: 1s, rise: 1, fall: 1}
    hooks: {promote: [sh, %s, %s], demote: [sh, %s, %s]}
`, n, strings.Join(c.etcd.Endpoints(), ", "), procTTL, h.dir, h.socket, h.dir, hook, h.dir, hook, h.dir)
		if err := os.WriteFile(h.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		c.hosts[n] = h
	}
	t.Cleanup(func() {
		for _, h := range c.hosts {
			if h.cmd != nil {
				_ = h.cmd.Process.Signal(syscall.SIGCONT)
				_ = h.cmd.Process.Kill()
				_ = h.cmd.Wait()
			}
			c.killGuard(h)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "hooks.log"))
			t.Logf("hooks.log:\n%s", b)
			for _, h := range c.hosts {
				b, _ := os.ReadFile(filepath.Join(h.dir, "agent.log"))
				t.Logf("%s agent.log (tail):\n%s", h.name, tail(string(b), 4000))
			}
		}
		_ = os.RemoveAll(dir)
	})
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// killGuard stops the guard process a host's agent started.
func (c *procCluster) killGuard(h *procHost) {
	if _, err := os.Stat(h.socket); err != nil {
		return
	}
	if pid := peerPIDOrZero(h.socket); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func peerPIDOrZero(socket string) int {
	pid, _ := socketPeerPID(socket)
	return pid
}

// start starts a host's agent process.
func (c *procCluster) start(name string) {
	c.t.Helper()
	h := c.hosts[name]
	out, err := os.OpenFile(filepath.Join(h.dir, "agent.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	h.cmd = exec.Command(c.bin, "agent", "--config", h.config, "--log-level", "debug")
	h.cmd.Stdout, h.cmd.Stderr = out, out
	if err := h.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	_ = out.Close()
}

func (c *procCluster) signal(name string, sig syscall.Signal) {
	c.t.Helper()
	if err := c.hosts[name].cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
	if sig == syscall.SIGKILL {
		_ = c.hosts[name].cmd.Wait()
	}
}

// primary reads the primary record from etcd.
func (c *procCluster) primary() (string, int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, registry.PrimaryKey("db"))
	if err != nil || len(resp.Kvs) == 0 {
		return "", 0
	}
	var p pb.Primary
	if registry.Decode(resp.Kvs[0].Value, &p) != nil {
		return "", 0
	}
	return p.GetHost(), p.GetEpoch()
}

// waitPrimary waits until host is primary at an epoch above after.
func (c *procCluster) waitPrimary(host string, after int64, within time.Duration) int64 {
	c.t.Helper()
	var epoch int64
	servertest.WaitUntil(c.t, within, host+" primary", func() bool {
		h, e := c.primary()
		epoch = e
		return h == host && e > after
	})
	return epoch
}

// waitRegistered waits until host's instance is passing.
func (c *procCluster) waitRegistered(host string) {
	c.t.Helper()
	servertest.WaitUntil(c.t, 10*procTTL, host+" registered and passing", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.cli.Get(ctx, registry.InstanceKey(host, "db"))
		if err != nil || len(resp.Kvs) == 0 {
			return false
		}
		var in pb.Instance
		return registry.Decode(resp.Kvs[0].Value, &in) == nil && in.GetHealth() == pb.Health_HEALTH_PASSING
	})
}

// startPair starts a1, waits until it is primary, then starts a2 and waits
// until it could take over; it returns a1's epoch.
func (c *procCluster) startPair() int64 {
	c.t.Helper()
	c.start("a1")
	e1 := c.waitPrimary("a1", 0, 10*procTTL)
	c.start("a2")
	c.waitRegistered("a2")
	return e1
}

// hookLine is one line of the hook log.
type hookLine struct {
	at     time.Time
	host   string
	role   string
	epoch  int64
	phase  string // start or end
	reason string
}

func (c *procCluster) hookLog() []hookLine {
	c.t.Helper()
	f, err := os.Open(filepath.Join(c.dir, "hooks.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []hookLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), " ", 6)
		if len(fs) < 5 {
			continue // torn by a kill mid-write
		}
		secs, err := strconv.ParseFloat(fs[0], 64)
		if err != nil {
			continue
		}
		sec, frac := math.Modf(secs)
		epoch, _ := strconv.ParseInt(fs[3], 10, 64)
		l := hookLine{at: time.Unix(int64(sec), int64(frac*1e9)), host: fs[1], role: fs[2], epoch: epoch, phase: fs[4]}
		if len(fs) == 6 {
			l.reason = fs[5]
		}
		out = append(out, l)
	}
	return out
}

// span is a time a host's service may have taken writes.
type span struct {
	host       string
	epoch      int64
	start, end time.Time // end zero: still open
}

// writableSpans turns the hook log into each host's writable spans: from a
// promote's start to the end of the next demote.
func writableSpans(lines []hookLine) []span {
	open := map[string]*span{}
	var out []span
	for _, l := range lines {
		switch {
		case l.role == "primary" && l.phase == "start" && open[l.host] == nil:
			open[l.host] = &span{host: l.host, epoch: l.epoch, start: l.at}
		case l.role == "standby" && l.phase == "end" && open[l.host] != nil:
			s := open[l.host]
			s.end = l.at
			out = append(out, *s)
			delete(open, l.host)
		}
	}
	for _, s := range open {
		out = append(out, *s)
	}
	return out
}

// checkNoOverlap fails when two hosts' writable spans overlap, or when an
// epoch's promote hook ran more than once.
func (c *procCluster) checkNoOverlap() {
	c.t.Helper()
	lines := c.hookLog()
	spans := writableSpans(lines)
	far := time.Now().Add(time.Hour)
	endOf := func(s span) time.Time {
		if s.end.IsZero() {
			return far
		}
		return s.end
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.host != b.host && a.start.Before(endOf(b)) && b.start.Before(endOf(a)) {
				c.t.Errorf("two writable primaries: %s (epoch %d) %s–%s and %s (epoch %d) %s–%s",
					a.host, a.epoch, a.start.Format(time.StampMicro), endOf(a).Format(time.StampMicro),
					b.host, b.epoch, b.start.Format(time.StampMicro), endOf(b).Format(time.StampMicro))
			}
		}
	}
	promotes := map[int64]int{}
	for _, l := range lines {
		if l.role == "primary" && l.phase == "start" {
			promotes[l.epoch]++
		}
	}
	for e, n := range promotes {
		if n > 1 {
			c.t.Errorf("the promote hook of epoch %d ran %d times", e, n)
		}
	}
}

func (c *procCluster) role(host string) string {
	b, _ := os.ReadFile(filepath.Join(c.hosts[host].dir, "role"))
	return strings.TrimSpace(string(b))
}

// The primary's agent frozen (SIGSTOP) for three TTLs, its service left
// running: the guard process demotes the service by the fence point, before
// the standby is promoted.
func TestFrozenAgentIsFencedByItsGuard(t *testing.T) {
	c := newProcCluster(t, "a1", "a2")
	e1 := c.startPair()

	frozen := time.Now()
	c.signal("a1", syscall.SIGSTOP)
	c.waitPrimary("a2", e1, 5*procTTL)
	servertest.WaitUntil(t, 2*procTTL, "a1's service demoted", func() bool { return c.role("a1") == "standby" })
	if d := time.Since(frozen); d < 3*procTTL {
		time.Sleep(3*procTTL - d) // the freeze lasts three TTLs
	}
	c.signal("a1", syscall.SIGCONT)
	// The thawed agent must not act on its lost term: a1 stays standby.
	servertest.WaitUntil(t, 5*procTTL, "a1 registered again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.cli.Get(ctx, registry.HostKey("a1"))
		return err == nil && len(resp.Kvs) == 1
	})
	c.checkNoOverlap()
	var byGuard bool
	for _, l := range c.hookLog() {
		if l.host == "a1" && l.role == "standby" && l.phase == "start" && strings.Contains(l.reason, "guard") {
			byGuard = true
		}
	}
	if !byGuard {
		t.Error("no demote of a1 by its guard in the hook log")
	}
	if h, _ := c.primary(); h != "a2" || c.role("a1") != "standby" {
		t.Errorf("after the thaw: primary %q, a1's service %s; want a2, standby", h, c.role("a1"))
	}
}

// The primary's agent killed (SIGKILL) and restarted only after two TTLs:
// the guard demotes its service by the fence point, and the restarted agent,
// finding the term its state file names gone, demotes first.
func TestKilledAgentRestartedLateDemotesFirst(t *testing.T) {
	c := newProcCluster(t, "a1", "a2")
	e1 := c.startPair()

	killed := time.Now()
	c.signal("a1", syscall.SIGKILL)
	c.waitPrimary("a2", e1, 5*procTTL)
	if d := time.Since(killed); d < 2*procTTL {
		time.Sleep(2*procTTL - d) // restarted after two TTLs
	}
	restarted := time.Now()
	c.start("a1")
	var first *hookLine
	servertest.WaitUntil(t, 5*procTTL, "a1's first hook after the restart", func() bool {
		for _, l := range c.hookLog() {
			if l.host == "a1" && l.at.After(restarted) {
				first = &l
				return true
			}
		}
		return false
	})
	if first.role != "standby" || !strings.Contains(first.reason, "restarted") || first.epoch != e1 {
		t.Errorf("a1's first hook after the restart: %s epoch %d %q; want a demote of epoch %d saying it restarted", first.role, first.epoch, first.reason, e1)
	}
	c.checkNoOverlap()
	if h, _ := c.primary(); h != "a2" || c.role("a1") != "standby" {
		t.Errorf("primary %q, a1's service %s; want a2, standby", h, c.role("a1"))
	}
}

// A slow promote hook (half the promote window) through several
// switchovers: each epoch's promote hook runs at most once, and never while
// another host's term is live.
func TestSlowPromoteThroughSwitchovers(t *testing.T) {
	c := newProcCluster(t, "a1", "a2")
	if err := os.WriteFile(filepath.Join(c.dir, "promote-sleep"), []byte("1.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	epoch := c.startPair()
	reg := c.etcd.Registry(t, 0)
	from, to := "a1", "a2"
	for range 4 {
		servertest.WaitUntil(t, 10*procTTL, "switchover to "+to+" accepted", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := reg.Switchover(ctx, &pb.SwitchoverRequest{Service: "db", To: to})
			return err == nil
		})
		epoch = c.waitPrimary(to, epoch, 10*procTTL)
		from, to = to, from
	}
	_ = from
	c.checkNoOverlap()
	var epochs []int64
	for _, s := range writableSpans(c.hookLog()) {
		epochs = append(epochs, s.epoch)
	}
	if !slices.IsSorted(epochs) || len(epochs) < 5 {
		t.Errorf("terms in order of start: epochs %v; want 5 or more, increasing", epochs)
	}
}

// The guard process killed under a running primary: the agent starts it
// again at the next renewal and arms it, and the primary keeps its role.
func TestKilledGuardIsStartedAgain(t *testing.T) {
	c := newProcCluster(t, "a1", "a2")
	e1 := c.startPair()
	old := peerPID(t, c.hosts["a1"].socket)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	servertest.WaitUntil(t, 3*procTTL, "a new guard for a1", func() bool {
		pid := peerPIDOrZero(c.hosts["a1"].socket)
		return pid > 0 && pid != old
	})
	// Two more renewals, each arming the new guard.
	time.Sleep(procTTL)
	if h, e := c.primary(); h != "a1" || e != e1 {
		t.Errorf("primary %s@%d after the guard was restarted; want a1@%d kept", h, e, e1)
	}
	c.checkNoOverlap()
}
