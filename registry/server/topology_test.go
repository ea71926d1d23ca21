package server_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/registry/server"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// logBuffer collects the log lines of several servers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged lines that contain every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for l := range strings.Lines(b.buf.String()) {
		match := true
		for _, p := range parts {
			match = match && strings.Contains(l, p)
		}
		if match {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// startZonedCluster starts one server per zone, members m1..mn, all logging
// into log at INFO. The servers are closed when the test ends.
func startZonedCluster(t *testing.T, zones []string, log *logBuffer) []*server.Server {
	t.Helper()
	n := len(zones)
	cfgs := make([]server.MemberConfig, n)
	peers := make([]string, n)
	dir := t.TempDir()
	for i, zone := range zones {
		name := fmt.Sprintf("m%d", i+1)
		client := fmt.Sprintf("http://127.0.0.1:%d", servertest.FreePort(t))
		peer := fmt.Sprintf("http://127.0.0.1:%d", servertest.FreePort(t))
		peers[i] = name + "=" + peer
		cfgs[i] = server.MemberConfig{
			Name: name, Zone: zone, DataDir: dir + "/" + name,
			ListenClientURLs: []string{client}, AdvertiseClientURLs: []string{client},
			ListenPeerURLs: []string{peer}, AdvertisePeerURLs: []string{peer},
			InitialClusterState: "new", Profile: server.ProfileLAN,
		}
	}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	servers := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfgs[i].InitialCluster = strings.Join(peers, ",")
		wg.Go(func() {
			servers[i], errs[i] = server.Start(server.Config{
				Member: &cfgs[i], GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
				StartTimeout: 30 * time.Second, Logger: logger,
			})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range servers {
			if s != nil {
				s.Close()
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start server %d: %v", i, err)
		}
	}
	return servers
}

// Every server checks the cluster's placement once it has started and the
// members' zones are recorded: with a zone that holds a quorum, each logs a
// WARN line saying so; spread 2+2+1 over three zones, none does.
func TestServersWarnWhenOneZoneHoldsTheQuorum(t *testing.T) {
	tests := []struct {
		name        string
		zones       []string
		wantSummary string
		wantWarns   []string // each logged once by every server
	}{
		{"dc1 dc1 cloud", []string{"dc1", "dc1", "cloud"}, `survivable_zone_losses="1 of 2"`, []string{
			"etcd topology: losing zone dc1 takes 2 of 3 voting members (m1, m2): the cluster would lose its quorum",
		}},
		// One member is a deliberate choice (dev, tests): said at INFO.
		{"one member", []string{"dc1"}, `survivable_zone_losses="0 of 1"`, nil},
		{"2+2+1 over three zones", []string{"dc1", "dc1", "dc2", "dc2", "cloud"}, `survivable_zone_losses="3 of 3"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var log logBuffer
			servers := startZonedCluster(t, tt.zones, &log)
			servertest.WaitUntil(t, 45*time.Second, "every server to check the topology", func() bool {
				return len(log.lines(`msg="etcd topology"`)) == len(servers)
			})
			if got := log.lines(`msg="etcd topology"`, tt.wantSummary); len(got) != len(servers) {
				t.Errorf("summary lines with %s: %q; all lines:\n%s", tt.wantSummary, got, strings.Join(log.lines(""), "\n"))
			}
			warns := log.lines("level=WARN", "etcd topology")
			if len(warns) != len(tt.wantWarns)*len(servers) {
				t.Errorf("%d topology warnings, want %d:\n%s", len(warns), len(tt.wantWarns)*len(servers), strings.Join(warns, "\n"))
			}
			for _, w := range tt.wantWarns {
				if got := log.lines("level=WARN", w); len(got) != len(servers) {
					t.Errorf("%d servers warned %q, want %d; warnings:\n%s", len(got), w, len(servers), strings.Join(warns, "\n"))
				}
			}
		})
	}
}
