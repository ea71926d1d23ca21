//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/e2e/chaos"
	"github.com/understudy-dev/understudy/e2e/cluster"
	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/client"
)

var topo *cluster.Cluster

// TestMain brings the topology up once for every test and tears it down
// afterwards (E2E_KEEP=1 leaves it running for a look). E2E_MODE=ask runs
// the demo database in ask mode; the default is noask.
func TestMain(m *testing.M) {
	if err := cluster.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	topo = cluster.New(root)
	switch m := os.Getenv("E2E_MODE"); m {
	case "", cluster.ModeNoAsk:
	case cluster.ModeAsk:
		topo.Mode = m
	default:
		fmt.Fprintf(os.Stderr, "e2e: E2E_MODE=%q: want %s or %s\n", m, cluster.ModeAsk, cluster.ModeNoAsk)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err = topo.Up(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := topo.SaveLogs(context.Background(), filepath.Join(root, "bin", "e2e-logs")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: saving host logs:", err)
	}
	if os.Getenv("E2E_KEEP") == "" {
		_ = topo.Down(context.Background())
	}
	os.Exit(code)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// No zone holds a majority of the five members: understudy topology, run on
// a host of the cluster, says every single-zone loss is survivable (exit 0).
func TestTopologySurvivesTheLossOfAnyZone(t *testing.T) {
	var out []byte
	waitFor(t, time.Minute, "understudy topology exits 0", func() error {
		var err error
		out, err = exec.Command("docker", "exec", "understudy-dc1", "/understudy", "topology", "--registry", "127.0.0.1:7420").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	t.Logf("understudy topology:\n%s", out)
	for _, zone := range []string{cluster.ZoneDC, cluster.ZoneCloudA, cluster.ZoneCloudB} {
		if !strings.Contains(string(out), zone) {
			t.Errorf("zone %s missing from the topology", zone)
		}
	}
	if strings.Contains(string(out), "NO:") {
		t.Errorf("a zone loss is not survivable:\n%s", out)
	}
	// Every server logged the same at start, once every zone was known.
	for _, h := range topo.Hosts {
		waitFor(t, time.Minute, h.Name+" logs its topology", func() error {
			if logs := topo.Logs(context.Background(), h, 100000); !strings.Contains(logs, `survivable_zone_losses="3 of 3"`) {
				return fmt.Errorf("no topology line in %s's log", h.Name)
			}
			return nil
		})
	}
}

// The database has a primary in one zone and a passing standby in the
// other; the pool serves from all three zones.
func TestServicesAreSpreadOverZones(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := client.New(ctx, topo.RegistryAddrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	waitFor(t, time.Minute, "db and cache healthy everywhere", func() error {
		zones := map[string]map[string]bool{}
		for _, svc := range []string{cluster.DBService, cluster.PoolService} {
			zones[svc] = map[string]bool{}
			for _, in := range cli.Members(svc) {
				if in.GetHealth() == pb.Health_HEALTH_PASSING {
					zones[svc][in.GetZone()] = true
				}
			}
		}
		if len(zones[cluster.DBService]) != 2 || len(zones[cluster.PoolService]) != 3 {
			return fmt.Errorf("passing instances by zone: %v", zones)
		}
		if _, ok := cli.Primary(cluster.DBService); !ok {
			return fmt.Errorf("db has no primary")
		}
		return nil
	})
}

// Every fault kind once, in an order E2E_SEED sets: no invariant may break.
func TestChaosEveryFaultKindOnce(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("E2E_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (E2E_SEED=%d repeats this order), %s mode", seed, seed, topo.Mode)
	// Twelve rounds take a few minutes; a rolling restart waits for every
	// host in turn, so allow far more before calling the run stuck.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	rep, err := chaos.Run(ctx, chaos.Config{
		Cluster: topo, Rounds: len(chaos.Kinds), Seed: seed,
		Logf: func(format string, args ...any) { t.Logf(format, args...) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	_ = rep.WriteTable(&table)
	t.Logf("chaos report:\n%s", table.String())
	root, _ := cluster.RepoRoot()
	if f, err := os.Create(filepath.Join(root, "bin", "e2e-chaos.json")); err == nil {
		_ = rep.WriteJSON(f)
		_ = f.Close()
	}
	for _, k := range rep.Kinds {
		if k.Rounds == 0 {
			t.Errorf("fault kind %s never ran", k.Kind)
		}
	}
	if len(rep.Kinds) != len(chaos.Kinds) {
		t.Errorf("%d fault kinds ran, want %d", len(rep.Kinds), len(chaos.Kinds))
	}
	for _, v := range rep.Violations {
		t.Error(v)
	}
}
