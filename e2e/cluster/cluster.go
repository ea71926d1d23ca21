// Package cluster drives the five-host, three-zone topology of
// deploy/compose with the docker CLI: bring it up, crash, freeze, cut off
// and restart hosts, and read what they recorded. The end-to-end tests and
// the chaos runner share it.
package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-dev/understudy/e2e/kvdemo"
)

// Host is one container standing in for a VM.
type Host struct {
	Name string
	Zone string
	// IP on the host's zone network: what the test machine dials.
	IP string
	// Links are the link networks to other zones, with the host's address
	// on each, restored when a cut zone is healed.
	Links map[string]string
	// DB: the host runs the demo database (service "db"); otherwise it is a
	// member of the pool "cache".
	DB bool
}

// Container is the docker container name of the host.
func (h Host) Container() string { return "understudy-" + h.Name }

// Services of the topology.
const (
	DBService   = "db"
	PoolService = "cache"
)

// Zones of the topology.
const (
	ZoneDC     = "dc"
	ZoneCloudA = "cloud-a"
	ZoneCloudB = "cloud-b"
)

// Ports every host serves on.
const (
	GRPCPort = "7420"
	EtcdPort = "2379"
	KVPort   = "8080"
)

// Topology is deploy/compose/docker-compose.yml, as the tests know it.
var Topology = []Host{
	{Name: "dc1", Zone: ZoneDC, IP: "10.77.1.11", DB: true, Links: map[string]string{"link-dc-cloud-a": "10.77.12.11", "link-dc-cloud-b": "10.77.13.11"}},
	{Name: "dc2", Zone: ZoneDC, IP: "10.77.1.12", Links: map[string]string{"link-dc-cloud-a": "10.77.12.12", "link-dc-cloud-b": "10.77.13.12"}},
	{Name: "ca1", Zone: ZoneCloudA, IP: "10.77.2.21", DB: true, Links: map[string]string{"link-dc-cloud-a": "10.77.12.21", "link-cloud-a-cloud-b": "10.77.23.21"}},
	{Name: "ca2", Zone: ZoneCloudA, IP: "10.77.2.22", Links: map[string]string{"link-dc-cloud-a": "10.77.12.22", "link-cloud-a-cloud-b": "10.77.23.22"}},
	{Name: "cb1", Zone: ZoneCloudB, IP: "10.77.3.31", Links: map[string]string{"link-dc-cloud-b": "10.77.13.31", "link-cloud-a-cloud-b": "10.77.23.31"}},
}

// Project is the docker-compose project name; networks are named
// Project_NETWORK.
const Project = "understudy-e2e"

// Modes of the demo database.
const (
	// ModeAsk: db asks its agent before every write and checks the
	// client's epoch.
	ModeAsk = "ask"
	// ModeNoAsk: db takes writes like PostgreSQL until its demote hook
	// stops it, and answers with the epoch it logged.
	ModeNoAsk = "noask"
)

// Cluster is the running topology.
type Cluster struct {
	// ComposeFile is deploy/compose/docker-compose.yml.
	ComposeFile string
	Hosts       []Host
	// Mode of the demo database, set when the hosts are created (Up).
	Mode string
	// Log receives every docker command run, for the test log.
	Log func(format string, args ...any)
}

// New returns the topology described by the compose file in repoRoot.
func New(repoRoot string) *Cluster {
	return &Cluster{
		ComposeFile: filepath.Join(repoRoot, "deploy", "compose", "docker-compose.yml"),
		Hosts:       slices.Clone(Topology),
		Mode:        ModeNoAsk,
		Log:         func(string, ...any) {},
	}
}

// Host returns the host named name.
func (c *Cluster) Host(name string) Host {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h
		}
	}
	panic("cluster: no host " + name)
}

// InZone returns the hosts of zone.
func (c *Cluster) InZone(zone string) []Host {
	var out []Host
	for _, h := range c.Hosts {
		if h.Zone == zone {
			out = append(out, h)
		}
	}
	return out
}

// RegistryAddrs are the gRPC addresses of every registry server.
func (c *Cluster) RegistryAddrs() []string {
	var out []string
	for _, h := range c.Hosts {
		out = append(out, h.IP+":"+GRPCPort)
	}
	return out
}

// EtcdEndpoints are every member's client URL.
func (c *Cluster) EtcdEndpoints() []string {
	var out []string
	for _, h := range c.Hosts {
		out = append(out, "http://"+h.IP+":"+EtcdPort)
	}
	return out
}

// Up removes what an earlier run left behind and starts every host.
func (c *Cluster) Up(ctx context.Context) error {
	if err := c.Down(ctx); err != nil {
		// Docker can keep a stale endpoint on a network a cut zone was
		// disconnected from and reconnected to; compose reuses the network.
		if !strings.Contains(err.Error(), "has active endpoints") {
			return err
		}
		c.Log("a network outlived its containers; reusing it: %v", err)
	}
	_, err := c.compose(ctx, "up", "-d")
	return err
}

// Down stops and removes the hosts, their data and the networks.
func (c *Cluster) Down(ctx context.Context) error {
	_, err := c.compose(ctx, "down", "-v", "--remove-orphans", "-t", "5")
	return err
}

func (c *Cluster) compose(ctx context.Context, args ...string) (string, error) {
	env := "E2E_KV_ASK=" + fmt.Sprint(c.Mode == ModeAsk)
	return c.run(ctx, []string{env}, "docker-compose", append([]string{"-p", Project, "-f", c.ComposeFile}, args...)...)
}

func (c *Cluster) docker(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, nil, "docker", args...)
}

func (c *Cluster) run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	c.Log("$ %s", strings.Join(append(slices.Clone(env), append([]string{name}, args...)...), " "))
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Kill crashes a host: every process dies at once, as in a power cut.
func (c *Cluster) Kill(ctx context.Context, hosts ...Host) error {
	_, err := c.docker(ctx, append([]string{"kill"}, containers(hosts)...)...)
	return err
}

// Stop shuts a host down gracefully (SIGTERM, then SIGKILL after 30s).
func (c *Cluster) Stop(ctx context.Context, hosts ...Host) error {
	_, err := c.docker(ctx, append([]string{"stop", "-t", "30"}, containers(hosts)...)...)
	return err
}

// Start boots stopped or killed hosts; their disks (etcd data, write
// logs, agent state) are kept.
func (c *Cluster) Start(ctx context.Context, hosts ...Host) error {
	_, err := c.docker(ctx, append([]string{"start"}, containers(hosts)...)...)
	return err
}

// Pause freezes every process of a host; Unpause thaws them.
func (c *Cluster) Pause(ctx context.Context, h Host) error {
	_, err := c.docker(ctx, "pause", h.Container())
	return err
}

// Unpause thaws a paused host.
func (c *Cluster) Unpause(ctx context.Context, h Host) error {
	_, err := c.docker(ctx, "unpause", h.Container())
	return err
}

// KillProcess crashes one supervised process of a host (server, app or
// agent); the host's init starts it again after a second.
func (c *Cluster) KillProcess(ctx context.Context, h Host, proc string) error {
	_, err := c.docker(ctx, "exec", h.Container(), "/e2ehost", "kill", proc)
	return err
}

// Signal sends sig (KILL, STOP, CONT, TERM) to one supervised process of a
// host; a process that dies is started again after a second.
func (c *Cluster) Signal(ctx context.Context, h Host, proc, sig string) error {
	_, err := c.docker(ctx, "exec", h.Container(), "/e2ehost", "kill", "--signal", sig, proc)
	return err
}

// KillHeld crashes one supervised process of a host and keeps it down for
// d, or until Release.
func (c *Cluster) KillHeld(ctx context.Context, h Host, proc string, d time.Duration) error {
	_, err := c.docker(ctx, "exec", h.Container(), "/e2ehost", "kill", "--restart-after", d.String(), proc)
	return err
}

// Release lets a process KillHeld keeps down start again now.
func (c *Cluster) Release(ctx context.Context, h Host, proc string) error {
	_, err := c.docker(ctx, "exec", h.Container(), "/e2ehost", "start", proc)
	return err
}

// KVState asks a database host's server for its role.
func (c *Cluster) KVState(ctx context.Context, h Host) (kvdemo.State, error) {
	var st kvdemo.State
	err := c.kv(ctx, h, http.MethodGet, "/state", nil, &st)
	return st, err
}

// KVDemote tells a database host's server it is a standby, as its demote
// hook would.
func (c *Cluster) KVDemote(ctx context.Context, h Host) error {
	body, _ := json.Marshal(kvdemo.RoleRequest{Role: kvdemo.RoleStandby})
	c.Log("demote kv on %s", h.Name)
	return c.kv(ctx, h, http.MethodPost, "/role", body, nil)
}

// KVSlowHealth makes a database host's GET /health answer late for d (0:
// no longer).
func (c *Cluster) KVSlowHealth(ctx context.Context, h Host, d time.Duration) error {
	c.Log("kv on %s: /health slow for %v", h.Name, d)
	return c.kv(ctx, h, http.MethodPost, "/slow?for="+d.String(), nil, nil)
}

func (c *Cluster) kv(ctx context.Context, h Host, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+h.IP+":"+KVPort+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kv on %s: %s %s: %s: %s", h.Name, method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// CutZone disconnects every host of zone from the links to other zones.
// Hosts inside the zone still reach each other, and the test machine still
// reaches them all.
func (c *Cluster) CutZone(ctx context.Context, zone string) error {
	for _, h := range c.InZone(zone) {
		for _, link := range sortedKeys(h.Links) {
			if _, err := c.docker(ctx, "network", "disconnect", "-f", Project+"_"+link, h.Container()); err != nil {
				return err
			}
		}
	}
	return nil
}

// HealZone reconnects a cut zone with its addresses and DNS names.
func (c *Cluster) HealZone(ctx context.Context, zone string) error {
	for _, h := range c.InZone(zone) {
		for _, link := range sortedKeys(h.Links) {
			out, err := c.docker(ctx, "network", "connect", "--ip", h.Links[link], "--alias", h.Name, Project+"_"+link, h.Container())
			if err != nil && !strings.Contains(out, "already exists") {
				return err
			}
		}
	}
	return nil
}

// Logs returns the last lines a host's processes printed.
func (c *Cluster) Logs(ctx context.Context, h Host, lines int) string {
	out, err := c.docker(ctx, "logs", "--tail", fmt.Sprint(lines), h.Container())
	if err != nil {
		return err.Error()
	}
	return out
}

// SaveLogs writes every host's whole output to dir/HOST.log, for reading a
// failed run afterwards.
func (c *Cluster) SaveLogs(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, h := range c.Hosts {
		out, err := c.docker(ctx, "logs", h.Container())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, h.Name+".log"), []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// KVLog reads a database host's write log from its disk, running or not.
func (c *Cluster) KVLog(ctx context.Context, h Host) ([]kvdemo.Write, error) {
	cmd := exec.CommandContext(ctx, "docker", "cp", h.Container()+":/data/kv/"+kvdemo.LogName, "-")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if strings.Contains(errb.String(), "No such file") || strings.Contains(errb.String(), "Could not find") {
			return nil, nil // never wrote
		}
		return nil, fmt.Errorf("docker cp from %s: %w: %s", h.Name, err, errb.String())
	}
	tr := tar.NewReader(&out)
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("write log of %s: %w", h.Name, err)
	}
	return kvdemo.ParseLog(tr)
}

// EtcdLeader names the host whose member leads etcd.
func (c *Cluster) EtcdLeader(ctx context.Context) (Host, error) {
	cli, err := c.Etcd()
	if err != nil {
		return Host{}, err
	}
	defer func() { _ = cli.Close() }()
	for _, h := range c.Hosts {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, "http://"+h.IP+":"+EtcdPort)
		cancel()
		if err != nil {
			continue
		}
		if st.Leader == st.Header.MemberId {
			return h, nil
		}
	}
	return Host{}, errors.New("no etcd member says it leads")
}

// Etcd returns a client of the cluster's etcd, quiet when members are down.
func (c *Cluster) Etcd() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   c.EtcdEndpoints(),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Available reports whether docker and docker-compose can run here, and
// the images were built.
func Available() error {
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: %w", tool, err)
		}
	}
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", "understudy-e2e:dev").CombinedOutput()
	if err != nil {
		return fmt.Errorf("image understudy-e2e:dev missing (run make images): %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// RepoRoot finds the repository root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func containers(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Container())
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
