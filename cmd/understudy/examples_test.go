package main

// Tests of the files shipped in deploy/: every example agent config loads
// with the real loader, the hook scripts they name exist and do what their
// configs rely on, and the systemd units' command lines, with the example
// environment files, are accepted by the CLI.

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sockaddrtemplate "github.com/hashicorp/go-sockaddr/template"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/understudy-dev/understudy/agent"
	"github.com/understudy-dev/understudy/registry/server"
)

const (
	deployDir   = "../../deploy"
	examplesDir = deployDir + "/examples"
	systemdDir  = deployDir + "/systemd"
	// hooksInstalled is where the example configs expect the scripts of
	// deploy/examples/hooks.
	hooksInstalled = "/usr/local/libexec/understudy/"
)

// templateRE finds go-sockaddr templates in configs and env files.
var templateRE = regexp.MustCompile(`\{\{[^}]*\}\}`)

// checkTemplates fails for a template that does not parse or names an
// unknown function: what no machine could expand.
func checkTemplates(t *testing.T, where, text string) {
	t.Helper()
	for _, tpl := range templateRE.FindAllString(text, -1) {
		if _, err := sockaddrtemplate.Parse(tpl); err != nil {
			t.Errorf("%s: template %s: %v", where, tpl, err)
		}
	}
}

// loadExample loads an example agent config with agent.LoadConfig. Its
// address templates expand to this machine's addresses; where one matches
// nothing here (a machine without a private IPv4 address), the config is
// loaded again with each template replaced by a fixed address, so that
// everything else is still validated by the real loader.
func loadExample(t *testing.T, path string) *agent.Config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkTemplates(t, path, string(b))
	cfg, err := agent.LoadConfig(path)
	if err == nil {
		return cfg
	}
	if !templateRE.Match(b) {
		t.Fatalf("%s: %v", path, err)
	}
	cfg, err2 := agent.ParseConfig(templateRE.ReplaceAll(b, []byte("192.0.2.10")))
	if err2 != nil {
		t.Fatalf("%s: %v", path, err2)
	}
	t.Logf("%s: its templates match no address on this machine (%v); validated with 192.0.2.10 in their place", path, err)
	return cfg
}

func exampleConfigs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(examplesDir + "/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs found: %v", err)
	}
	return files
}

// Every example config shipped in deploy/examples must load, and every hook
// script it names must be in deploy/examples/hooks, executable.
func TestExampleConfigsLoad(t *testing.T) {
	for _, f := range exampleConfigs(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg := loadExample(t, f)
			for _, s := range cfg.Services {
				for what, argv := range map[string][]string{
					"hooks.promote": s.Hooks.Promote, "hooks.demote": s.Hooks.Demote,
					"freshness": s.Freshness, "check.exec": s.Check.Exec,
				} {
					if len(argv) == 0 || !strings.HasPrefix(argv[0], hooksInstalled) {
						continue
					}
					script := filepath.Join(examplesDir, "hooks", strings.TrimPrefix(argv[0], hooksInstalled))
					fi, err := os.Stat(script)
					switch {
					case err != nil:
						t.Errorf("%s %s runs %s, which deploy/examples/hooks lacks: %v", s.Name, what, argv[0], err)
					case fi.Mode()&0o111 == 0:
						t.Errorf("%s is not executable (mode %v)", script, fi.Mode())
					}
				}
			}
		})
	}
}

// The two hosts of each primary/replica pair must agree on everything but
// who they are and where, and one of them must be preferred.
func TestExamplePairsMatch(t *testing.T) {
	for _, pair := range [][2]string{
		{"postgres-primary.yaml", "postgres-replica.yaml"},
		{"solr-primary.yaml", "solr-replica.yaml"},
	} {
		t.Run(pair[0], func(t *testing.T) {
			a := loadExample(t, filepath.Join(examplesDir, pair[0]))
			b := loadExample(t, filepath.Join(examplesDir, pair[1]))
			if a.Host == b.Host || a.Zone == b.Zone {
				t.Errorf("hosts %s@%s and %s@%s: want two hosts in two zones", a.Host, a.Zone, b.Host, b.Zone)
			}
			if !slices.Equal(a.EtcdEndpoints, b.EtcdEndpoints) || a.TTL != b.TTL || a.FenceMargin != b.FenceMargin {
				t.Errorf("etcd_endpoints, ttl or fence_margin differ")
			}
			if len(a.Services) != 1 || len(b.Services) != 1 {
				t.Fatalf("want one service per host, got %d and %d", len(a.Services), len(b.Services))
			}
			sa, sb := a.Services[0], b.Services[0]
			if sa.Mode != agent.ModePrimary {
				t.Errorf("%s: mode %s, want primary", sa.Name, sa.Mode)
			}
			if sa.Priority <= sb.Priority {
				t.Errorf("priority %d on %s, %d on %s: want the first preferred", sa.Priority, a.Host, sb.Priority, b.Host)
			}
			sa.Priority, sb.Priority = 0, 0
			ya, err := yaml.Marshal(sa)
			if err != nil {
				t.Fatal(err)
			}
			yb, err := yaml.Marshal(sb)
			if err != nil {
				t.Fatal(err)
			}
			if string(ya) != string(yb) {
				t.Errorf("services differ beyond priority:\n%s\n%s", ya, yb)
			}
		})
	}
}

// The example agent configs list exactly the members of the example cluster.
func TestExampleEndpointsMatchCluster(t *testing.T) {
	env := readEnvFile(t, filepath.Join(systemdDir, "server.env.example"))
	var want []string
	for _, m := range strings.Split(env["UNDERSTUDY_INITIAL_CLUSTER"], ",") {
		_, peer, _ := strings.Cut(m, "=")
		want = append(want, strings.Replace(peer, ":2380", ":2379", 1))
	}
	if len(want) != 5 {
		t.Fatalf("UNDERSTUDY_INITIAL_CLUSTER names %d members, want 5", len(want))
	}
	slices.Sort(want)
	for _, f := range exampleConfigs(t) {
		got := slices.Sorted(slices.Values(loadExample(t, f).EtcdEndpoints))
		if !slices.Equal(got, want) {
			t.Errorf("%s: etcd_endpoints %v, want the cluster's client URLs %v", filepath.Base(f), got, want)
		}
	}
}

// The hook scripts are POSIX sh: each must at least parse, and pass
// shellcheck where it is installed.
func TestHookScriptsParse(t *testing.T) {
	scripts, err := filepath.Glob(examplesDir + "/hooks/*.sh")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no hook scripts: %v", err)
	}
	sh := lookPath(t, "sh")
	shellcheck, _ := exec.LookPath("shellcheck")
	for _, s := range scripts {
		if out, err := exec.Command(sh, "-n", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
		if shellcheck != "" {
			if out, err := exec.Command(shellcheck, "-s", "sh", s).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", s, err, out)
			}
		}
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// runHook runs a hook script with exactly env (plus PATH) and returns its
// combined output and whether it succeeded.
func runHook(t *testing.T, script string, env []string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(lookPath(t, "sh"), append([]string{filepath.Join(examplesDir, "hooks", script)}, args...)...)
	cmd.Env = env
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	}
	out, err := cmd.CombinedOutput()
	if err != nil && !isExit(err) {
		t.Fatal(err)
	}
	return string(out), err == nil
}

func isExit(err error) bool {
	_, ok := err.(*exec.ExitError)
	return ok
}

// fakeSolr records the replication commands it receives, per core.
type fakeSolr struct {
	mu       sync.Mutex
	commands []string
	status   int
}

func (f *fakeSolr) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	core, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/solr/"), "/replication")
	if !ok || r.URL.Query().Get("wt") != "json" {
		http.NotFound(w, r)
		return
	}
	cmd := r.URL.Query().Get("command")
	f.commands = append(f.commands, core+" "+cmd)
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	if cmd == "details" {
		_, _ = fmt.Fprintln(w, `{"responseHeader":{"status":0},"details":{"indexSize":"1 MB","commits":[{"indexVersion":1,"generation":7}],"indexVersion":1700000000000,"generation":42,"leader":{"replicableGeneration":41}}}`)
		return
	}
	_, _ = fmt.Fprintln(w, `{"responseHeader":{"status":0},"status":"OK"}`)
}

// fail makes every later request answer status.
func (f *fakeSolr) fail(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

func (f *fakeSolr) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.commands
	f.commands = nil
	return c
}

// solr.sh against a fake Solr: promote stops polling before it serves,
// demote stops serving before it polls, both for every core named; a Solr
// that is not running counts as demoted, not as promoted.
func TestSolrHooks(t *testing.T) {
	lookPath(t, "curl")
	solr := &fakeSolr{}
	srv := httptest.NewServer(solr)
	defer srv.Close()
	env := []string{"SOLR_URL=" + srv.URL + "/solr", "UNDERSTUDY_EPOCH=12", "UNDERSTUDY_REASON=no primary"}

	if out, ok := runHook(t, "solr.sh", env, "promote", "books", "authors"); !ok {
		t.Fatalf("promote failed: %s", out)
	}
	want := []string{"books disablepoll", "books enablereplication", "authors disablepoll", "authors enablereplication"}
	if got := solr.take(); !slices.Equal(got, want) {
		t.Errorf("promote sent %q, want %q", got, want)
	}
	if out, ok := runHook(t, "solr.sh", env, "demote", "books"); !ok {
		t.Fatalf("demote failed: %s", out)
	}
	if got, want := solr.take(), []string{"books disablereplication", "books enablepoll"}; !slices.Equal(got, want) {
		t.Errorf("demote sent %q, want %q", got, want)
	}
	if _, err := exec.LookPath("jq"); err == nil {
		out, ok := runHook(t, "solr.sh", env, "freshness", "books")
		if !ok || strings.TrimSpace(out) != "42" {
			t.Errorf("freshness printed %q (ok %v), want the core's generation 42", out, ok)
		}
		solr.take()
	}

	solr.fail(http.StatusInternalServerError)
	if out, ok := runHook(t, "solr.sh", env, "demote", "books"); ok {
		t.Errorf("demote succeeded against a failing Solr: %s", out)
	}
	if out, ok := runHook(t, "solr.sh", env, "promote", "books"); ok {
		t.Errorf("promote succeeded against a failing Solr: %s", out)
	}
	if out, ok := runHook(t, "solr.sh", env); ok || !strings.Contains(out, "usage") {
		t.Errorf("no command: ok %v, output %q; want usage", ok, out)
	}

	down := "SOLR_URL=http://" + closedAddr(t) + "/solr"
	if out, ok := runHook(t, "solr.sh", []string{down}, "demote", "books"); !ok {
		t.Errorf("demote of a Solr that is not running failed: %s", out)
	}
	if out, ok := runHook(t, "solr.sh", []string{down}, "promote", "books"); ok {
		t.Errorf("promote of a Solr that is not running succeeded: %s", out)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// Stand-ins for PostgreSQL's tools. The server's state (primary, standby,
// down, or broken: the data directory cannot be read) is a file.
const (
	fakePgCtl = `#!/bin/sh
echo "pg_ctl $*" >> "$FAKE_LOG"
state=$(cat "$FAKE_STATE")
case $1 in
status)
	case $state in down) exit 3 ;; broken) exit 4 ;; esac ;;
promote) echo primary > "$FAKE_STATE" ;;
stop) echo down > "$FAKE_STATE" ;;
esac
`
	fakePsql = `#!/bin/sh
case $(cat "$FAKE_STATE") in
primary) echo f ;;
standby) echo t ;;
*) echo "psql: connection refused" >&2; exit 2 ;;
esac
`
)

// postgres.sh against stand-ins for pg_ctl and psql: the shutdown mode
// follows the demote reason, standby.signal is written before the server
// stops, every command is idempotent, and the check fails a primary role
// whose server is in recovery.
func TestPostgresHooks(t *testing.T) {
	lookPath(t, "curl")
	dir := t.TempDir()
	bin, data := filepath.Join(dir, "bin"), filepath.Join(dir, "data")
	for _, d := range []string{bin, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"pg_ctl": fakePgCtl, "psql": fakePsql} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	statePath, logPath := filepath.Join(dir, "state"), filepath.Join(dir, "log")
	agentRole := http.StatusServiceUnavailable
	var mu sync.Mutex
	agentSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/primary/postgres" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(agentRole)
	}))
	defer agentSrv.Close()

	type result struct {
		ok     bool
		state  string
		pgCtl  []string // pg_ctl calls other than status
		signal bool     // standby.signal written
	}
	hook := func(t *testing.T, state, reason, command string) (result, string) {
		t.Helper()
		_ = os.Remove(filepath.Join(data, "standby.signal"))
		_ = os.Remove(logPath)
		if err := os.WriteFile(statePath, []byte(state+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, ok := runHook(t, "postgres.sh", []string{
			"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
			"PGDATA=" + data, "PG_BINDIR=" + bin, "PG_AS=",
			"FAKE_STATE=" + statePath, "FAKE_LOG=" + logPath,
			"UNDERSTUDY_AGENT_URL=" + agentSrv.URL,
			"UNDERSTUDY_EPOCH=31", "UNDERSTUDY_REASON=" + reason,
		}, command)
		r := result{ok: ok}
		b, _ := os.ReadFile(statePath)
		r.state = strings.TrimSpace(string(b))
		log, _ := os.ReadFile(logPath)
		for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
			if l != "" && !strings.HasPrefix(l, "pg_ctl status") {
				r.pgCtl = append(r.pgCtl, l)
			}
		}
		_, err := os.Stat(filepath.Join(data, "standby.signal"))
		r.signal = err == nil
		return r, out
	}
	stop := func(mode string) []string {
		return []string{fmt.Sprintf("pg_ctl stop -D %s -m %s -w -t 20", data, mode)}
	}

	for _, tt := range []struct {
		name, state, reason, command string
		want                         result
	}{
		{"promote a standby", "standby", "no primary", "promote",
			result{ok: true, state: "primary", pgCtl: []string{"pg_ctl promote -D " + data + " -w -t 5"}}},
		{"promote the primary", "primary", "no primary", "promote", result{ok: true, state: "primary"}},
		{"promote a stopped server", "down", "no primary", "promote", result{state: "down"}},
		{"demote for a switchover", "primary", "switchover", "demote",
			result{ok: true, state: "down", pgCtl: stop("fast"), signal: true}},
		{"demote for a failed check", "primary", "check failed", "demote",
			result{ok: true, state: "down", pgCtl: stop("fast"), signal: true}},
		{"fence: no lease renewals", "primary", "lease renewals stopped", "demote",
			result{ok: true, state: "down", pgCtl: stop("immediate"), signal: true}},
		{"fence: promotion not recorded", "primary", "promotion not recorded", "demote",
			result{ok: true, state: "down", pgCtl: stop("immediate"), signal: true}},
		{"demote a stopped server", "down", "lease lost", "demote", result{ok: true, state: "down", signal: true}},
		{"demote: cannot tell", "broken", "switchover", "demote", result{state: "broken", signal: true}},
		{"check a primary", "primary", "", "check", result{ok: true, state: "primary"}},
		{"check a standby", "standby", "", "check", result{ok: true, state: "standby"}},
		{"check a stopped server", "down", "", "check", result{state: "down"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, out := hook(t, tt.state, tt.reason, tt.command)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %+v, want %+v; output:\n%s", got, tt.want, out)
			}
		})
	}

	// The elected primary's server came back in recovery: the check fails.
	mu.Lock()
	agentRole = http.StatusOK
	mu.Unlock()
	for state, wantOK := range map[string]bool{"standby": false, "primary": true} {
		if got, out := hook(t, state, "", "check"); got.ok != wantOK {
			t.Errorf("check of an elected primary whose server is %s: ok %v, want %v; output:\n%s", state, got.ok, wantOK, out)
		}
	}
}

// readEnvFile reads a systemd EnvironmentFile: KEY=VALUE lines, # comments.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", path, line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

// unit is the part of a systemd service file this test reads.
type unit struct {
	env       map[string]string // Environment= defaults
	execStart string            // continuation lines joined
	settings  map[string]string // last value of every other key
}

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{env: map[string]string{}, settings: map[string]string{}}
	joined := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "Environment":
			ek, ev, _ := strings.Cut(v, "=")
			u.env[ek] = ev
		case "ExecStart":
			u.execStart = v
		default:
			u.settings[k] = v
		}
	}
	return u
}

var (
	braceVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	bareVarRE  = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)$`)
)

// expandExecStart turns an ExecStart line into argv the way systemd does for
// these units: words split at whitespace, ${VAR} inside a word replaced by
// the value as it is (one argument), a word that is only $VAR replaced by
// the value split at whitespace (zero or more arguments).
func expandExecStart(t *testing.T, line string, env map[string]string) []string {
	t.Helper()
	var argv []string
	for _, w := range strings.Fields(line) {
		if m := bareVarRE.FindStringSubmatch(w); m != nil {
			argv = append(argv, strings.Fields(env[m[1]])...)
			continue
		}
		if strings.ContainsAny(w, `"'`) {
			t.Fatalf("ExecStart word %s is quoted: this test does not handle systemd quoting", w)
		}
		argv = append(argv, braceVarRE.ReplaceAllStringFunc(w, func(v string) string {
			name := braceVarRE.FindStringSubmatch(v)[1]
			val, ok := env[name]
			if !ok || val == "" {
				t.Errorf("ExecStart uses ${%s}, which neither the unit nor the example env file sets", name)
			}
			return val
		}))
	}
	return argv
}

// unitArgs reads a unit and its example env file and returns the argv of
// its ExecStart, and the unit.
func unitArgs(t *testing.T, unitFile, envFile string) ([]string, unit) {
	t.Helper()
	u := readUnit(t, filepath.Join(systemdDir, unitFile))
	env := map[string]string{}
	for k, v := range u.env {
		env[k] = v
	}
	envPath := filepath.Join(systemdDir, envFile)
	if want := "/etc/understudy/" + strings.TrimSuffix(envFile, ".example"); u.settings["EnvironmentFile"] != want {
		t.Errorf("EnvironmentFile=%s, want %s (installed from %s)", u.settings["EnvironmentFile"], want, envFile)
	}
	for k, v := range readEnvFile(t, envPath) {
		env[k] = v // the file overrides Environment=, as in systemd
	}
	argv := expandExecStart(t, u.execStart, env)
	if len(argv) < 2 || argv[0] != "/usr/local/bin/understudy" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/understudy COMMAND ...", argv)
	}
	return argv, u
}

// parseCLI parses argv[1:] with the real command's flags, without running it.
func parseCLI(t *testing.T, argv []string) (*commandFlags, error) {
	t.Helper()
	cmd, rest, err := newRootCmd().Find(argv[1:])
	if err != nil {
		return nil, err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, err
	}
	if extra := cmd.Flags().Args(); len(extra) > 0 {
		return nil, fmt.Errorf("%s takes no arguments, got %q", cmd.Name(), extra)
	}
	return &commandFlags{name: cmd.Name(), get: func(name string) (string, bool) {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed {
			return "", false
		}
		return f.Value.String(), true
	}, slice: func(name string) []string {
		f := cmd.Flags().Lookup(name)
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			t.Fatalf("--%s is not a list flag", name)
		}
		return sv.GetSlice()
	}}, nil
}

type commandFlags struct {
	name  string
	get   func(name string) (string, bool)
	slice func(name string) []string
}

// understudy-server.service with server.env.example: the flags parse, the
// member configuration they make is valid once its templates expand (to
// the member's address in the initial cluster), and the member advertises
// the peer URL the initial cluster gives it.
func TestServerUnitFlags(t *testing.T) {
	argv, u := unitArgs(t, "understudy-server.service", "server.env.example")
	for _, a := range argv {
		checkTemplates(t, "understudy-server.service ExecStart", a)
	}
	f, err := parseCLI(t, argv)
	if err != nil {
		t.Fatalf("understudy %q: %v", argv[1:], err)
	}
	if f.name != "server" {
		t.Fatalf("ExecStart runs %q, want server", f.name)
	}
	str := func(name string) string {
		v, ok := f.get(name)
		if !ok {
			t.Errorf("ExecStart does not set --%s", name)
		}
		return v
	}
	name := str("name")
	peers := map[string]string{}
	for _, m := range strings.Split(str("initial-cluster"), ",") {
		n, url, _ := strings.Cut(m, "=")
		peers[n] = url
	}
	ownPeer, ok := peers[name]
	if !ok {
		t.Fatalf("--initial-cluster has no entry for --name %s", name)
	}
	ip, _, err := net.SplitHostPort(strings.TrimPrefix(ownPeer, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	expand := func(urls []string) []string {
		out := make([]string, len(urls))
		for i, u := range urls {
			out[i] = templateRE.ReplaceAllString(u, ip)
		}
		return out
	}
	mc := server.MemberConfig{
		Name: name, Zone: str("zone"), DataDir: str("data-dir"),
		ListenClientURLs: expand(f.slice("listen-client-urls")), AdvertiseClientURLs: expand(f.slice("advertise-client-urls")),
		ListenPeerURLs: expand(f.slice("listen-peer-urls")), AdvertisePeerURLs: expand(f.slice("advertise-peer-urls")),
		InitialCluster: str("initial-cluster"), InitialClusterState: str("initial-cluster-state"),
		InitialClusterToken: str("initial-cluster-token"), Profile: str("profile"),
	}
	if err := mc.Validate(); err != nil {
		t.Errorf("member configuration: %v", err)
	}
	if !slices.Equal(mc.AdvertisePeerURLs, []string{ownPeer}) {
		t.Errorf("--advertise-peer-urls %v, want %s as in --initial-cluster", mc.AdvertisePeerURLs, ownPeer)
	}
	if mc.Zone != "dc" {
		t.Errorf("--zone %q: the example is a member of zone dc", mc.Zone)
	}
	if _, err := newLogger(str("log-level")); err != nil {
		t.Error(err)
	}
	if dir := "/var/lib/" + u.settings["StateDirectory"] + "/"; !strings.HasPrefix(mc.DataDir, dir) {
		t.Errorf("--data-dir %s is outside StateDirectory %s", mc.DataDir, dir)
	}
}

// understudy-agent.service with agent.env.example: the flags parse, and the
// unit waits for the longest demote hook of the examples before it kills.
func TestAgentUnitFlags(t *testing.T) {
	argv, u := unitArgs(t, "understudy-agent.service", "agent.env.example")
	f, err := parseCLI(t, argv)
	if err != nil {
		t.Fatalf("understudy %q: %v", argv[1:], err)
	}
	if f.name != "agent" {
		t.Fatalf("ExecStart runs %q, want agent", f.name)
	}
	if v, _ := f.get("config"); v != "/etc/understudy/agent.yaml" {
		t.Errorf("--config %q, want /etc/understudy/agent.yaml", v)
	}
	level, _ := f.get("log-level")
	if _, err := newLogger(level); err != nil {
		t.Error(err)
	}
	stopTimeout, err := time.ParseDuration(u.settings["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	for _, file := range exampleConfigs(t) {
		cfg := loadExample(t, file)
		for _, s := range cfg.Services {
			if len(s.Hooks.Demote) > 0 && s.Hooks.Timeout.Duration+5*time.Second > stopTimeout {
				t.Errorf("%s: hooks.timeout %v of %s leaves no room in TimeoutStopSec %v", filepath.Base(file), s.Hooks.Timeout.Duration, s.Name, stopTimeout)
			}
		}
		if cfg.StateFile != "" && !strings.HasPrefix(cfg.StateFile, "/var/lib/"+u.settings["StateDirectory"]+"/") {
			t.Errorf("%s: state_file %s is outside the unit's StateDirectory", filepath.Base(file), cfg.StateFile)
		}
	}
}
