package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// minimalYAML is the smallest valid config: everything else has a default.
const minimalYAML = `
host: h1
etcd_endpoints: [http://127.0.0.1:2379]
services:
  - name: cache
    address: 127.0.0.1:11211
`

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatalf("ParseConfig:\n%s\nerror: %v", src, err)
	}
	return cfg
}

func TestParseConfigDefaults(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	if got, want := len(cfg.Services), 1; got != want {
		t.Fatalf("len(Services) = %d, want %d", got, want)
	}
	ch := cfg.Services[0].Check
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"host", cfg.Host, "h1"},
		{"zone", cfg.Zone, ""},
		{"etcd_endpoints", strings.Join(cfg.EtcdEndpoints, ","), "http://127.0.0.1:2379"},
		{"ttl", cfg.TTL.Duration, 5 * time.Second},
		{"services[0].name", cfg.Services[0].Name, "cache"},
		{"services[0].address", cfg.Services[0].Address, "127.0.0.1:11211"},
		{"services[0].mode", cfg.Services[0].Mode, ModePool},
		{"services[0].check.tcp", ch.TCP, "self"},
		{"services[0].check.http", ch.HTTP, ""},
		{"services[0].check.exec", len(ch.Exec), 0},
		{"services[0].check.interval", ch.Interval.Duration, time.Second},
		{"services[0].check.timeout", ch.Timeout.Duration, 2 * time.Second},
		{"services[0].check.rise", deref(ch.Rise), 2},
		{"services[0].check.fall", deref(ch.Fall), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestParseConfigHostDefaultsToHostname(t *testing.T) {
	want, err := os.Hostname()
	if err != nil {
		t.Skipf("os.Hostname: %v", err)
	}
	cfg, err := ParseConfig([]byte(strings.Replace(minimalYAML, "host: h1\n", "", 1)))
	if err != nil {
		t.Skipf("this machine's hostname %q is not a valid registry name: %v", want, err)
	}
	if got := cfg.Host; got != want {
		t.Errorf("Host = %q, want %q", got, want)
	}
}

// TestParseConfigValid covers accepted configs whose values are not all defaults.
func TestParseConfigValid(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// check returns a value of the parsed config and what it should be.
		check func(c *Config) (got, want any)
	}{
		{
			name: "timeout defaults to 2s, or the interval if longer",
			src: minimalYAML + `    check:
      interval: 3s
`,
			check: func(c *Config) (any, any) { return c.Services[0].Check.Timeout.Duration, 3 * time.Second },
		},
		{
			name: "promote timeout defaults to the promote window",
			src: minimalYAML + `    mode: primary
    hooks: {demote: [/bin/true]}
`,
			check: func(c *Config) (any, any) {
				return c.Services[0].Hooks.PromoteTimeout.Duration, 3750 * time.Millisecond
			},
		},
		{
			name:  "guard socket defaults beside the state file",
			src:   minimalYAML + "state_file: /var/lib/understudy/state.json\n",
			check: func(c *Config) (any, any) { return c.Guard.Socket, "/var/lib/understudy/guard.sock" },
		},
		{
			name: "explicit values kept",
			src: `
host: h1
zone: dc-1
etcd_endpoints: [http://10.0.0.1:2379, https://10.0.0.2:2379]
ttl: 10s
services:
  - name: web
    mode: pool
    address: 127.0.0.1:8080
    tags: [a, b]
    priority: 7
    check:
      http: http://127.0.0.1:8080/health
      interval: 2s
      timeout: 2s
      rise: 3
      fall: 1
`,
			check: func(c *Config) (any, any) {
				s := c.Services[0]
				got := []any{c.Zone, len(c.EtcdEndpoints), c.TTL.Duration, s.Priority, strings.Join(s.Tags, ","),
					s.Check.TCP, s.Check.HTTP, s.Check.Interval.Duration, s.Check.Timeout.Duration, *s.Check.Rise, *s.Check.Fall}
				want := []any{"dc-1", 2, 10 * time.Second, int32(7), "a,b",
					"", "http://127.0.0.1:8080/health", 2 * time.Second, 2 * time.Second, 3, 1}
				return fmt.Sprint(got), fmt.Sprint(want)
			},
		},
		{
			name: "exec check does not get a tcp default",
			src: minimalYAML + `    check:
      exec: [pg_isready, -q]
`,
			check: func(c *Config) (any, any) {
				return c.Services[0].Check.TCP + "|" + strings.Join(c.Services[0].Check.Exec, " "), "|pg_isready -q"
			},
		},
		{
			name: "no services is allowed",
			src: `
host: h1
etcd_endpoints: [http://127.0.0.1:2379]
`,
			check: func(c *Config) (any, any) { return len(c.Services), 0 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.src)
			if got, want := tt.check(cfg); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

// TestParseConfigErrors checks that each bad input is rejected with an error
// naming the offending field (and, for YAML errors, the line).
func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings the error must contain
	}{
		{
			name: "unknown top-level key",
			src: `
host: h1
etcd_endpoints: [http://127.0.0.1:2379]
ttls: 5s
`,
			want: []string{`"ttls"`, "line 4"},
		},
		{
			name: "unknown key in service",
			src: minimalYAML + `    adddress: 127.0.0.1:1
`,
			want: []string{`"adddress"`, "line 7"},
		},
		{
			name: "unknown key in check",
			src: minimalYAML + `    check:
      tcp: self
      intervall: 1s
`,
			want: []string{`"intervall"`, "line 9"},
		},
		{
			name: "bad ttl",
			src:  minimalYAML + "ttl: 2 seconds\n",
			want: []string{"ttl", `"2 seconds"`, "not a duration"},
		},
		{
			name: "ttl without unit",
			src:  minimalYAML + "ttl: 5\n",
			want: []string{"ttl", `"5"`},
		},
		{
			name: "ttl is a list",
			src:  minimalYAML + "ttl: [10s]\n",
			want: []string{"ttl"},
		},
		{
			name: "check.interval is a mapping",
			src: minimalYAML + `    check:
      interval: {s: 1}
`,
			want: []string{"services[0].check.interval"},
		},
		{
			name: "rise not a number",
			src: minimalYAML + `    check:
      rise: two
`,
			want: []string{"line 8", "`two`"},
		},
		{
			name: "bad check.interval",
			src: minimalYAML + `    check:
      interval: 2 seconds
`,
			want: []string{"services[0].check.interval", `"2 seconds"`},
		},
		{
			name: "bad check.timeout",
			src: minimalYAML + `    check:
      timeout: 2 seconds
`,
			want: []string{"services[0].check.timeout", `"2 seconds"`},
		},
		{
			name: "zero check.interval",
			src: minimalYAML + `    check:
      interval: 0s
`,
			want: []string{"services[0].check.interval: must be positive"},
		},
		{
			name: "missing service name",
			src: `
host: h1
etcd_endpoints: [http://127.0.0.1:2379]
services:
  - address: 127.0.0.1:11211
`,
			want: []string{"services[0].name", "empty"},
		},
		{
			name: "missing service address",
			src: `
host: h1
etcd_endpoints: [http://127.0.0.1:2379]
services:
  - name: cache
`,
			want: []string{"services[0].address", "empty"},
		},
		{
			name: "service name with slash",
			src:  strings.Replace(minimalYAML, "name: cache", "name: ca/che", 1),
			want: []string{"services[0].name", `"ca/che"`},
		},
		{
			name: "host with slash",
			src:  strings.Replace(minimalYAML, "host: h1", "host: h/1", 1),
			want: []string{"host", `"h/1"`},
		},
		{
			name: "zone with slash",
			src:  minimalYAML + "zone: dc/1\n",
			want: []string{"zone", `"dc/1"`},
		},
		{
			name: "missing etcd_endpoints",
			src:  strings.Replace(minimalYAML, "etcd_endpoints: [http://127.0.0.1:2379]\n", "", 1),
			want: []string{"etcd_endpoints", "empty"},
		},
		{
			name: "etcd endpoint not a URL",
			src:  strings.Replace(minimalYAML, "http://127.0.0.1:2379", "http://127.0.0.1:2379, 10.0.0.2:2379", 1),
			want: []string{"etcd_endpoints[1]", `"10.0.0.2:2379"`},
		},
		{
			name: "rise 0",
			src: minimalYAML + `    check:
      rise: 0
`,
			want: []string{"services[0].check.rise", "at least 1"},
		},
		{
			name: "fall 0",
			src: minimalYAML + `    check:
      fall: 0
`,
			want: []string{"services[0].check.fall", "at least 1"},
		},
		{
			name: "negative fall",
			src: minimalYAML + `    check:
      fall: -1
`,
			want: []string{"services[0].check.fall", "got -1"},
		},
		{
			name: "check timeout far longer than the ttl",
			src: minimalYAML + `    check:
      interval: 1s
      timeout: 11s
`,
			want: []string{"services[0].check.timeout", "twice the lease ttl"},
		},
		{
			name: "primary without a demote hook",
			src: minimalYAML + `    mode: primary
`,
			want: []string{"services[0].hooks.demote", "required"},
		},
		{
			name: "promote timeout past the promote window",
			src: minimalYAML + `    mode: primary
    hooks: {demote: [/bin/true], promote_timeout: 4s}
`,
			want: []string{"services[0].hooks.promote_timeout", "promote window", "3.75s"},
		},
		{
			name: "relative guard socket",
			src:  minimalYAML + "guard: {socket: guard.sock}\n",
			want: []string{"guard.socket", "absolute"},
		},
		{
			name: "watchdog timeout under a second",
			src:  minimalYAML + "guard: {watchdog: /dev/watchdog, watchdog_timeout: 500ms}\n",
			want: []string{"guard.watchdog_timeout", "at least 1s"},
		},
		{
			name: "ttl 1s too short",
			src:  minimalYAML + "ttl: 1s\n",
			want: []string{"ttl", "too short"},
		},
		{
			name: "ttl 2500ms not whole seconds",
			src:  minimalYAML + "ttl: 2500ms\n",
			want: []string{"ttl", "whole seconds"},
		},
		{
			name: "interval times fall far beyond ttl",
			src: minimalYAML + `    check:
      interval: 30s
`,
			want: []string{"services[0].check.interval", "ttl"},
		},
		{
			name: "tcp and http at once",
			src: minimalYAML + `    check:
      tcp: 127.0.0.1:1
      http: http://127.0.0.1:2/
`,
			want: []string{"services[0].check", "exactly one"},
		},
		{
			name: "http and exec at once",
			src: minimalYAML + `    check:
      http: http://127.0.0.1:2/
      exec: ["true"]
`,
			want: []string{"services[0].check", "exactly one"},
		},
		{
			name: "empty exec command",
			src: minimalYAML + `    check:
      exec: [""]
`,
			want: []string{"services[0].check.exec", "empty"},
		},
		{
			name: "duplicate service names",
			src: minimalYAML + `  - name: cache
    address: 127.0.0.1:11212
`,
			want: []string{"services[1].name", `"cache"`, "services[0]"},
		},
		{
			name: "hooks on a pool service",
			src: minimalYAML + `    hooks: {promote: [/bin/true]}
`,
			want: []string{"services[0].hooks.promote", "only applies to mode: primary"},
		},
		{
			name: "negative max_lag",
			src: minimalYAML + `    mode: primary
    hooks: {demote: [/bin/true]}
    max_lag: -1
`,
			want: []string{"services[0].max_lag", "negative"},
		},
		{
			name: "fence margin over half the ttl",
			src: minimalYAML + `fence_margin: 3s
`,
			want: []string{"fence_margin", "half the ttl"},
		},
		{
			name: "unknown mode",
			src: minimalYAML + `    mode: active
`,
			want: []string{"services[0].mode", `"active"`},
		},
		{
			name: "http check not a URL",
			src: minimalYAML + `    check:
      http: 127.0.0.1:8080/health
`,
			want: []string{"services[0].check.http", `"127.0.0.1:8080/health"`, "URL"},
		},
		{
			name: "several errors all reported",
			src: `
host: h1
ttl: 1s
services:
  - name: a/b
    address: 127.0.0.1:1
    mode: primaryy
    check:
      rise: 0
  - name: ok
    check:
      fall: 0
`,
			want: []string{
				"etcd_endpoints",
				"ttl",
				"services[0].name",
				"services[0].mode",
				"services[0].check.rise",
				"services[1].address",
				"services[1].check.fall",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src))
			if err == nil {
				t.Fatalf("ParseConfig(%q) succeeded, want error containing %q", tt.src, tt.want)
			}
			got := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("error does not contain %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestParseConfigBadIntervalOnlyBlamesInterval checks that an unparsable
// interval is reported once, without a knock-on complaint about the timeout
// the user never wrote.
func TestParseConfigBadIntervalOnlyBlamesInterval(t *testing.T) {
	_, err := ParseConfig([]byte(minimalYAML + `    check:
      interval: 2 seconds
`))
	if err == nil {
		t.Fatal("ParseConfig succeeded, want error")
	}
	if got := err.Error(); strings.Contains(got, "check.timeout") {
		t.Errorf("error blames check.timeout, which was not set:\n%s", got)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := LoadConfig(path)
		if err == nil {
			t.Fatal("LoadConfig of a missing file succeeded")
		}
		if !os.IsNotExist(err) {
			t.Errorf("err = %v, want a not-exist error", err)
		}
		if !strings.Contains(err.Error(), "nope.yaml") {
			t.Errorf("error %q does not name the file", err)
		}
	})
	t.Run("valid file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(path, []byte(minimalYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cfg.Services[0].Name, "cache"; got != want {
			t.Errorf("Services[0].Name = %q, want %q", got, want)
		}
		if got, want := cfg.TTL.Duration, DefaultTTL; got != want {
			t.Errorf("TTL = %v, want %v", got, want)
		}
	})
	t.Run("invalid file names path and field", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		if err := os.WriteFile(path, []byte(minimalYAML+"ttl: 1s\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(path)
		if err == nil {
			t.Fatal("LoadConfig succeeded, want error")
		}
		for _, w := range []string{path, "ttl"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
	})
}
