package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/understudy-dev/understudy/registry"
)

// Config is an agent's configuration file.
type Config struct {
	// Host names this machine in the registry. Default: the OS hostname.
	Host string `yaml:"host"`
	// Zone is the failure domain the host belongs to (dc1, cloud-a, ...).
	Zone string `yaml:"zone"`
	// EtcdEndpoints are the etcd client URLs; the agent balances over them
	// and survives the loss of any one.
	EtcdEndpoints []string `yaml:"etcd_endpoints"`
	// TTL of the agent's lease: how long its registrations outlive a crash.
	// Whole seconds, at least 2s. Default 5s.
	TTL Duration `yaml:"ttl"`
	// HTTPAddr serves role endpoints for HAProxy-style checks:
	// /primary/SERVICE, /replica/SERVICE, /health/SERVICE. Default ":7422";
	// "off" disables it.
	HTTPAddr string `yaml:"http_addr"`
	// StateFile keeps the lease ID across restarts, so an agent restarted
	// within the TTL resumes its lease and keeps a primary role. Empty: no
	// resume.
	StateFile string `yaml:"state_file"`
	// ElectionStep is how long a candidate waits per rank before
	// campaigning for a free primary role. Default 100ms.
	ElectionStep Duration `yaml:"election_step"`
	// FenceMargin: a primary that cannot renew its lease demotes itself this
	// long before the lease could expire, and its demote hook must finish
	// within it. Default a quarter of the TTL.
	FenceMargin Duration `yaml:"fence_margin"`
	// Guard is the process that demotes this host's primary-mode services
	// by the fence point should the agent stop feeding it (frozen, killed,
	// deadlocked).
	Guard GuardConfig `yaml:"guard"`
	// Services this host runs.
	Services []ServiceConfig `yaml:"services"`
}

// GuardConfig configures the guard process. The agent starts it (as
// `understudy guard`) when none answers on Socket; it outlives the agent,
// and a restarted agent feeds the same guard.
type GuardConfig struct {
	// Socket is the guard's unix socket. Default: guard.sock beside
	// state_file, else /run/understudy/HOST.guard.sock.
	Socket string `yaml:"socket"`
	// Watchdog is a kernel watchdog device (e.g. /dev/watchdog, softdog)
	// the guard keeps alive while it can vouch for every armed service:
	// should the guard itself hang, or a demote hook never finish, the
	// kernel resets the host. Empty: none.
	Watchdog string `yaml:"watchdog"`
	// WatchdogTimeout is the watchdog's timeout. Default: the fence margin,
	// rounded up to whole seconds.
	WatchdogTimeout Duration `yaml:"watchdog_timeout"`
}

// HooksConfig are the commands that make a primary-mode service follow its
// role. Each runs with UNDERSTUDY_SERVICE, UNDERSTUDY_HOST, UNDERSTUDY_ROLE,
// UNDERSTUDY_EPOCH, UNDERSTUDY_PREVIOUS_PRIMARY and UNDERSTUDY_REASON set.
type HooksConfig struct {
	// Promote makes this instance the primary (argv, no shell). A failure
	// gives the role up again. It gets UNDERSTUDY_DEADLINE (RFC 3339) and
	// UNDERSTUDY_DEADLINE_MS: when it must have finished, the fence point
	// of a lease renewed just before it started, ttl − fence_margin away.
	Promote []string `yaml:"promote"`
	// Demote makes it a standby, or stops it accepting writes. Required in
	// primary mode: the guard runs it if the agent stops. It must be
	// idempotent, work while the service is down or restarting, and finish
	// within fence_margin, the time a cut-off primary has left.
	Demote []string `yaml:"demote"`
	// Timeout bounds the demote hook. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// PromoteTimeout bounds the promote hook. Default and maximum: the
	// promote window, ttl − fence_margin.
	PromoteTimeout Duration `yaml:"promote_timeout"`
}

// ServiceConfig is one service instance on this host.
type ServiceConfig struct {
	// Name of the service, shared by all its instances (postgres, memcached).
	Name string `yaml:"name"`
	// Mode is "pool" (every healthy instance serves) or "primary" (one
	// primary at a time, elected among healthy instances).
	Mode string `yaml:"mode"`
	// Address clients connect to, host:port; go-sockaddr templates allowed,
	// e.g. "{{ GetPrivateIP }}:11211".
	Address string `yaml:"address"`
	// Tags are free-form labels published with the instance.
	Tags []string `yaml:"tags"`
	// Priority ranks candidates for the primary role; higher wins.
	Priority int32 `yaml:"priority"`
	// Check decides the instance's health.
	Check CheckConfig `yaml:"check"`
	// Hooks run on role changes (primary mode).
	Hooks HooksConfig `yaml:"hooks"`
	// Freshness is a command printing how up to date this instance's data
	// is, as an integer (larger is fresher), e.g. a replica's WAL position.
	// Fresher candidates win elections. Primary mode, optional.
	Freshness []string `yaml:"freshness"`
	// MaxLag: when set, this instance never campaigns while its freshness
	// lags the freshest known value by more. Primary mode.
	MaxLag *int64 `yaml:"max_lag"`
}

// CheckConfig is a health check: exactly one of TCP, HTTP or Exec.
type CheckConfig struct {
	// TCP passes when a connection to this host:port opens. "self" or empty
	// with no other kind set means the service's address.
	TCP string `yaml:"tcp"`
	// HTTP passes on a 2xx answer to GET of this URL.
	HTTP string `yaml:"http"`
	// Exec passes when this command exits 0; argv, no shell.
	Exec []string `yaml:"exec"`
	// Interval between checks. Default 1s.
	Interval Duration `yaml:"interval"`
	// Timeout of one check. Default 2s, or the interval if longer: a check
	// that times out on a loaded host is a failure, and a primary with a
	// failing check hands over. A check slower than the interval delays the
	// next one.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many passes in a row turn a critical instance passing. Default 2.
	Rise *int `yaml:"rise"`
	// Fall is how many failures in a row turn a passing instance critical. Default 2.
	Fall *int `yaml:"fall"`
}

// Mode names accepted in the config.
const (
	ModePool    = "pool"
	ModePrimary = "primary"
)

// Defaults.
const (
	DefaultTTL      = 5 * time.Second
	DefaultInterval = time.Second
	DefaultRise     = 2
	DefaultFall     = 2
	// DefaultCheckTimeout survives a loaded host: an 800ms stall of a
	// PostgreSQL check once demoted a primary with nobody to take over.
	DefaultCheckTimeout = 2 * time.Second
)

// Duration is a time.Duration written as "500ms" or "2s" in YAML. A value
// that does not parse is kept as an error for Validate to report with the
// field's name.
type Duration struct {
	time.Duration
	raw string
	err error
}

// D makes a Duration from a time.Duration.
func D(d time.Duration) Duration { return Duration{Duration: d, raw: d.String()} }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.raw = n.Value
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		d.raw = "(line " + strconv.Itoa(n.Line) + ")" // set, so no default hides the error
		d.err = fmt.Errorf("line %d: want a duration like 500ms, 2s or 1m", n.Line)
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.err = fmt.Errorf("%q is not a duration (write it like 500ms, 2s or 1m)", n.Value)
		return nil
	}
	d.Duration = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// IsSet reports whether the value was given.
func (d Duration) IsSet() bool { return d.raw != "" }

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

var yamlFieldErr = regexp.MustCompile(`line (\d+): field (\S+) not found in type agent\.(\w+)`)

// ParseConfig parses YAML, rejecting unknown keys, fills in defaults and
// validates the result.
func ParseConfig(b []byte) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		msg := yamlFieldErr.ReplaceAllString(err.Error(), `line $1: unknown field "$2" in $3`)
		msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "")
		return nil, errors.New(msg)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// SetDefaults fills in unset fields.
func (c *Config) SetDefaults() {
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if !c.TTL.IsSet() {
		c.TTL = D(DefaultTTL)
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":7422"
	}
	if !c.ElectionStep.IsSet() {
		c.ElectionStep = D(100 * time.Millisecond)
	}
	if !c.FenceMargin.IsSet() && c.TTL.err == nil {
		c.FenceMargin = D(max(c.TTL.Duration/4, 200*time.Millisecond))
	}
	if c.Guard.Socket == "" {
		c.Guard.Socket = defaultGuardSocket(c)
	}
	if !c.Guard.WatchdogTimeout.IsSet() && c.FenceMargin.err == nil {
		c.Guard.WatchdogTimeout = D(max(time.Second, c.FenceMargin.Round(time.Second)))
	}
	for i := range c.Services {
		s := &c.Services[i]
		if s.Mode == "" {
			s.Mode = ModePool
		}
		ch := &s.Check
		if ch.TCP == "" && ch.HTTP == "" && len(ch.Exec) == 0 {
			ch.TCP = "self"
		}
		if !ch.Interval.IsSet() {
			ch.Interval = D(DefaultInterval)
		}
		if !ch.Timeout.IsSet() && ch.Interval.err == nil {
			ch.Timeout = D(max(DefaultCheckTimeout, ch.Interval.Duration))
		}
		if ch.Rise == nil {
			ch.Rise = ptr(DefaultRise)
		}
		if ch.Fall == nil {
			ch.Fall = ptr(DefaultFall)
		}
		if !s.Hooks.Timeout.IsSet() {
			s.Hooks.Timeout = D(30 * time.Second)
		}
		if !s.Hooks.PromoteTimeout.IsSet() && c.TTL.err == nil && c.FenceMargin.err == nil {
			s.Hooks.PromoteTimeout = D(c.promoteWindow())
		}
	}
}

func ptr[T any](v T) *T { return &v }

// promoteWindow is the time a promote hook has: the elector renews its
// lease just before the hook starts, so the fence point is a whole TTL less
// the fence margin away (less one round trip to etcd).
func (c *Config) promoteWindow() time.Duration { return c.TTL.Duration - c.FenceMargin.Duration }

// Validate checks every field and the relations between them. The error
// names each offending field, e.g. services[1].check.rise.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	name := func(field, v string) {
		if err := registry.ValidateName(field, v); err != nil {
			errs = append(errs, err)
		}
	}
	name("host", c.Host)
	if c.Zone != "" {
		name("zone", c.Zone)
	}
	if len(c.EtcdEndpoints) == 0 {
		bad("etcd_endpoints", "is empty; list the etcd client URLs, e.g. [http://10.0.0.1:2379]")
	}
	for i, e := range c.EtcdEndpoints {
		if !isHTTPURL(e) {
			bad(fmt.Sprintf("etcd_endpoints[%d]", i), "%q is not an http(s)://host:port URL", e)
		}
	}
	switch {
	case c.TTL.err != nil:
		bad("ttl", "%v", c.TTL.err)
	case c.TTL.Duration < 2*time.Second:
		bad("ttl", "%v is too short (at least 2s)", c.TTL.Duration)
	case c.TTL.Duration%time.Second != 0:
		bad("ttl", "%v is not whole seconds (etcd leases count seconds)", c.TTL.Duration)
	}
	for _, d := range []struct {
		name string
		d    Duration
	}{{"election_step", c.ElectionStep}, {"fence_margin", c.FenceMargin}} {
		switch {
		case d.d.err != nil:
			bad(d.name, "%v", d.d.err)
		case d.d.IsSet() && d.d.Duration <= 0:
			bad(d.name, "must be positive")
		}
	}
	if c.FenceMargin.err == nil && c.TTL.err == nil && c.FenceMargin.Duration*2 > c.TTL.Duration {
		bad("fence_margin", "%v is more than half the ttl %v: a primary would demote itself between renewals", c.FenceMargin.Duration, c.TTL.Duration)
	}
	switch {
	case c.Guard.WatchdogTimeout.err != nil:
		bad("guard.watchdog_timeout", "%v", c.Guard.WatchdogTimeout.err)
	case c.Guard.WatchdogTimeout.IsSet() && c.Guard.WatchdogTimeout.Duration < time.Second:
		bad("guard.watchdog_timeout", "%v is too short (watchdogs count whole seconds, at least 1s)", c.Guard.WatchdogTimeout.Duration)
	}
	if c.Guard.Socket != "" && !filepath.IsAbs(c.Guard.Socket) {
		bad("guard.socket", "%q is not an absolute path", c.Guard.Socket)
	}
	window := time.Duration(0)
	if c.TTL.err == nil && c.FenceMargin.err == nil {
		window = c.promoteWindow()
	}
	seen := map[string]int{}
	for i := range c.Services {
		errs = append(errs, c.Services[i].validate(fmt.Sprintf("services[%d]", i), c.TTL.Duration, window)...)
		n := c.Services[i].Name
		if j, dup := seen[n]; dup && n != "" {
			bad(fmt.Sprintf("services[%d].name", i), "%q is already used by services[%d]", n, j)
		}
		seen[n] = i
	}
	return errors.Join(errs...)
}

func (s *ServiceConfig) validate(field string, ttl, promoteWindow time.Duration) []error {
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, args...)))
	}
	if err := registry.ValidateName(field+".name", s.Name); err != nil {
		errs = append(errs, err)
	}
	switch s.Mode {
	case ModePool:
		for name, set := range map[string]bool{"hooks.promote": len(s.Hooks.Promote) > 0, "hooks.demote": len(s.Hooks.Demote) > 0, "freshness": len(s.Freshness) > 0, "max_lag": s.MaxLag != nil} {
			if set {
				bad(name, "only applies to mode: primary")
			}
		}
	case ModePrimary:
		if len(s.Hooks.Demote) == 0 {
			bad("hooks.demote", "is required in mode: primary: it is what stops the service when this host loses the role, run by the guard if the agent cannot")
		}
	default:
		bad("mode", "%q: want %s or %s", s.Mode, ModePool, ModePrimary)
	}
	for name, argv := range map[string][]string{"hooks.promote": s.Hooks.Promote, "hooks.demote": s.Hooks.Demote, "freshness": s.Freshness} {
		if len(argv) > 0 && argv[0] == "" {
			bad(name, "the command is empty")
		}
	}
	for _, h := range []struct {
		name string
		d    Duration
	}{{"hooks.timeout", s.Hooks.Timeout}, {"hooks.promote_timeout", s.Hooks.PromoteTimeout}} {
		switch {
		case h.d.err != nil:
			bad(h.name, "%v", h.d.err)
		case h.d.IsSet() && h.d.Duration <= 0:
			bad(h.name, "must be positive")
		}
	}
	if pt := s.Hooks.PromoteTimeout; pt.err == nil && s.Mode == ModePrimary && promoteWindow > 0 && pt.Duration > promoteWindow {
		bad("hooks.promote_timeout", "%v does not fit the promote window ttl − fence_margin = %v: a promotion must end before the fence point", pt.Duration, promoteWindow)
	}
	if s.MaxLag != nil && *s.MaxLag < 0 {
		bad("max_lag", "must not be negative, got %d", *s.MaxLag)
	}
	if s.Address == "" {
		bad("address", "is empty; give host:port clients connect to")
	} else if _, err := registry.ExpandAddress(s.Address); err != nil {
		bad("address", "%v", err)
	}
	ch := &s.Check
	kinds := 0
	for _, set := range []bool{ch.TCP != "", ch.HTTP != "", len(ch.Exec) > 0} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		bad("check", "set exactly one of tcp, http and exec")
	}
	if ch.HTTP != "" && !isHTTPURL(ch.HTTP) {
		bad("check.http", "%q is not an http(s):// URL", ch.HTTP)
	}
	if len(ch.Exec) > 0 && ch.Exec[0] == "" {
		bad("check.exec", "the command is empty")
	}
	durOK := true
	for _, d := range []struct {
		name string
		d    Duration
	}{{"interval", ch.Interval}, {"timeout", ch.Timeout}} {
		switch {
		case !d.d.IsSet():
			durOK = false // no default was derived from a bad interval; that error is reported already
		case d.d.err != nil:
			bad("check."+d.name, "%v", d.d.err)
			durOK = false
		case d.d.Duration <= 0:
			bad("check."+d.name, "must be positive")
			durOK = false
		}
	}
	if durOK && ttl > 0 && ch.Timeout.Duration > 2*ttl {
		bad("check.timeout", "%v is longer than twice the lease ttl %v: a hung service would be noticed long after a crash would", ch.Timeout.Duration, ttl)
	}
	if ch.Rise != nil && *ch.Rise < 1 {
		bad("check.rise", "must be at least 1, got %d", *ch.Rise)
	}
	if ch.Fall != nil && *ch.Fall < 1 {
		bad("check.fall", "must be at least 1, got %d", *ch.Fall)
	}
	if durOK && ch.Fall != nil && ttl > 0 && ch.Interval.Duration*time.Duration(*ch.Fall) > 10*ttl {
		bad("check.interval", "%v × fall %d is far longer than the lease ttl %v: a failure would be noticed long after a crash would", ch.Interval.Duration, *ch.Fall, ttl)
	}
	return errs
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
