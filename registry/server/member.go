package server

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/pkg/v3/featuregate"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/features"
	"go.uber.org/zap"

	"github.com/understudy-dev/understudy/registry"
)

// Timing profiles for the embedded member.
const (
	// ProfileLAN suits members within one data centre: heartbeat 100 ms, election 1 s.
	ProfileLAN = "lan"
	// ProfileWAN suits members across zones with tens of milliseconds between
	// them: heartbeat 250 ms, election 2.5 s.
	ProfileWAN = "wan"
)

// MemberConfig configures the embedded etcd member. URL fields accept
// go-sockaddr templates such as http://{{ GetPrivateIP }}:2380.
type MemberConfig struct {
	Name                string
	Zone                string
	DataDir             string
	ListenClientURLs    []string
	AdvertiseClientURLs []string
	ListenPeerURLs      []string
	AdvertisePeerURLs   []string
	// InitialCluster is name=peerURL,... for every founding member.
	InitialCluster string
	// InitialClusterState is "new" to bootstrap, "existing" to join.
	InitialClusterState string
	// InitialClusterToken keeps separate clusters apart. Default "understudy".
	InitialClusterToken string
	// Profile is ProfileLAN (default) or ProfileWAN; Heartbeat and Election
	// override it when set.
	Profile   string
	Heartbeat time.Duration
	Election  time.Duration
	// LogLevel of etcd's own logger (debug, info, warn, error). Default "error".
	LogLevel string
}

// DefaultMemberConfig is a one-member cluster on loopback.
func DefaultMemberConfig() MemberConfig {
	return MemberConfig{
		Name:                "default",
		DataDir:             "default.etcd",
		ListenClientURLs:    []string{"http://127.0.0.1:2379"},
		AdvertiseClientURLs: []string{"http://127.0.0.1:2379"},
		ListenPeerURLs:      []string{"http://127.0.0.1:2380"},
		AdvertisePeerURLs:   []string{"http://127.0.0.1:2380"},
		InitialClusterState: "new",
		Profile:             ProfileLAN,
	}
}

// Validate checks the fields and the relations between them, naming the
// offending field.
func (c *MemberConfig) Validate() error {
	var errs []error
	if err := registry.ValidateName("name", c.Name); err != nil {
		errs = append(errs, err)
	}
	if c.Zone != "" {
		if err := registry.ValidateName("zone", c.Zone); err != nil {
			errs = append(errs, err)
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir is empty"))
	}
	for _, f := range []struct {
		name string
		urls []string
	}{
		{"listen-client-urls", c.ListenClientURLs}, {"advertise-client-urls", c.AdvertiseClientURLs},
		{"listen-peer-urls", c.ListenPeerURLs}, {"advertise-peer-urls", c.AdvertisePeerURLs},
	} {
		if _, err := parseURLs(f.name, f.urls); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.InitialClusterState {
	case "new", "existing":
	default:
		errs = append(errs, fmt.Errorf("initial-cluster-state %q: want new or existing", c.InitialClusterState))
	}
	switch c.Profile {
	case "", ProfileLAN, ProfileWAN:
	default:
		errs = append(errs, fmt.Errorf("profile %q: want %s or %s", c.Profile, ProfileLAN, ProfileWAN))
	}
	hb, el := c.timing()
	if el < 5*hb {
		errs = append(errs, fmt.Errorf("election %v must be at least 5 × heartbeat %v", el, hb))
	}
	return errors.Join(errs...)
}

func (c *MemberConfig) timing() (heartbeat, election time.Duration) {
	heartbeat, election = 100*time.Millisecond, time.Second
	if c.Profile == ProfileWAN {
		heartbeat, election = 250*time.Millisecond, 2500*time.Millisecond
	}
	if c.Heartbeat > 0 {
		heartbeat = c.Heartbeat
	}
	if c.Election > 0 {
		election = c.Election
	}
	return heartbeat, election
}

func parseURLs(field string, raw []string) ([]url.URL, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s is empty", field)
	}
	out := make([]url.URL, 0, len(raw))
	for _, r := range raw {
		expanded, err := registry.ExpandAddress(r)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		u, err := url.Parse(expanded)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("%s: %q is not an http(s)://host:port URL", field, expanded)
		}
		out = append(out, *u)
	}
	return out, nil
}

// embedConfig turns c into etcd's own configuration. etcd logs through a
// zap logger whose level the returned AtomicLevel controls.
func (c *MemberConfig) embedConfig() (*embed.Config, zap.AtomicLevel, error) {
	level := zap.NewAtomicLevel()
	if err := c.Validate(); err != nil {
		return nil, level, err
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	var err error
	if cfg.ListenClientUrls, err = parseURLs("listen-client-urls", c.ListenClientURLs); err != nil {
		return nil, level, err
	}
	if cfg.AdvertiseClientUrls, err = parseURLs("advertise-client-urls", c.AdvertiseClientURLs); err != nil {
		return nil, level, err
	}
	if cfg.ListenPeerUrls, err = parseURLs("listen-peer-urls", c.ListenPeerURLs); err != nil {
		return nil, level, err
	}
	if cfg.AdvertisePeerUrls, err = parseURLs("advertise-peer-urls", c.AdvertisePeerURLs); err != nil {
		return nil, level, err
	}
	cfg.InitialCluster = c.InitialCluster
	if cfg.InitialCluster == "" {
		peers := make([]string, len(cfg.AdvertisePeerUrls))
		for i, u := range cfg.AdvertisePeerUrls {
			peers[i] = c.Name + "=" + u.String()
		}
		cfg.InitialCluster = strings.Join(peers, ",")
	} else if cfg.InitialCluster, err = registry.ExpandAddress(cfg.InitialCluster); err != nil {
		return nil, level, fmt.Errorf("initial-cluster: %w", err)
	}
	cfg.ClusterState = c.InitialClusterState
	cfg.InitialClusterToken = c.InitialClusterToken
	if cfg.InitialClusterToken == "" {
		cfg.InitialClusterToken = "understudy"
	}
	hb, el := c.timing()
	cfg.TickMs = uint(hb / time.Millisecond)
	cfg.ElectionMs = uint(el / time.Millisecond)
	if err := guardLeases(cfg); err != nil {
		return nil, level, err
	}
	cfg.LogLevel = c.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, level, fmt.Errorf("log level %q: %w", cfg.LogLevel, err)
	}
	zcfg := zap.NewProductionConfig()
	zcfg.Level = level
	zcfg.OutputPaths, zcfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	lg, err := zcfg.Build()
	if err != nil {
		return nil, level, err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	if err := cfg.Validate(); err != nil {
		return nil, level, fmt.Errorf("etcd member configuration: %w", err)
	}
	return cfg, level, nil
}

// guardLeases turns on what etcd offers, beyond its defaults, to keep lease
// expiry honest across leader changes.
//
// Already on in v3.7 without a setting: a leader checks that it still leads
// before it revokes expired leases or answers a renewal (etcd issue #15247,
// PR #16822; #12528 showed a stale leader's revoke forwarded to the new
// leader and applied, while clients renewed through the new one). The check
// is skipped while the member's raft ticker ran within the last three
// heartbeats (PR #18428, for speed), which a leader resumed after a freeze
// does at once, so a revoke can still slip through before it learns of the
// new term. No v3.7 setting closes that window (raft cannot refuse to
// forward one kind of proposal: etcd-io/raft#88 is open). Agents at least
// send no renewal to such a member: their endpoint prober takes it back
// only once it answers a linearizable read.
func guardLeases(cfg *embed.Config) error {
	// Pre-vote (default since v3.6, stated so it stays): a member back from
	// a freeze or partition cannot depose a working leader by bumping the
	// term, so it causes no needless election and lease refresh.
	cfg.PreVote = true
	// Without checkpoints a new leader restarts every lease at its full
	// TTL, so a lease longer than etcd's fixed 5-minute checkpoint interval
	// (the event history's: 7 days) may never expire if leaders change
	// often enough (etcd issue #9888; checkpoints PR #9924, kept working
	// past the first leader change and across restarts by PR #13508,
	// persisted once the cluster version is 3.6). Agent leases of seconds
	// are below the interval and are still refreshed by a new leader to
	// TTL + election timeout: that delays an expiry, it never brings one
	// before an agent's deadline.
	gates, ok := cfg.ServerFeatureGate.(featuregate.MutableFeatureGate)
	if !ok {
		return errors.New("etcd feature gates cannot be set")
	}
	return gates.SetFromMap(map[string]bool{string(features.LeaseCheckpoint): true})
}

// Member is a running embedded etcd member.
type Member struct {
	cfg   MemberConfig
	etcd  *embed.Etcd
	level zap.AtomicLevel
}

// StartMember starts an embedded etcd member and waits until it has joined
// its cluster (or until timeout).
func StartMember(cfg MemberConfig, timeout time.Duration) (*Member, error) {
	ecfg, level, err := cfg.embedConfig()
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	case <-time.After(timeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd member %s did not join its cluster within %v (are the other founding members up?)", cfg.Name, timeout)
	}
	return &Member{cfg: cfg, etcd: e, level: level}, nil
}

// ClientURLs are where clients reach this member.
func (m *Member) ClientURLs() []string {
	out := make([]string, len(m.etcd.Clients))
	for i, l := range m.etcd.Clients {
		out[i] = "http://" + l.Addr().String()
	}
	if len(m.etcd.Config().AdvertiseClientUrls) > 0 {
		out = out[:0]
		for _, u := range m.etcd.Config().AdvertiseClientUrls {
			out = append(out, u.String())
		}
	}
	return out
}

// PeerURLs are where other members reach this member.
func (m *Member) PeerURLs() []string {
	out := []string{}
	for _, u := range m.etcd.Config().AdvertisePeerUrls {
		out = append(out, u.String())
	}
	return out
}

// Name of the member.
func (m *Member) Name() string { return m.cfg.Name }

// Zone of the member.
func (m *Member) Zone() string { return m.cfg.Zone }

// Err reports fatal errors of the running member.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// Close stops the member. Safe to call more than once. etcd reports its own
// listeners closing as errors; those are expected here, so its logger is
// silenced first.
func (m *Member) Close() {
	m.level.SetLevel(zap.FatalLevel)
	m.etcd.Close()
}
