package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodService = `
host: h1
etcd_endpoints: [http://127.0.0.1:1]
services:
  - name: cache
    address: 127.0.0.1:11211
`

// Bad input exits with status 2 and an error naming the field or argument.
func TestBadInputExitsTwoNamingTheField(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown config key", []string{"agent", "--config", writeConfig(t, goodService+"    colour: red\n")}, `unknown field "colour"`},
		{"bad duration", []string{"agent", "--config", writeConfig(t, goodService+"    check: {interval: 2 seconds}\n")}, "services[0].check.interval"},
		{"rise 0", []string{"agent", "--config", writeConfig(t, goodService+"    check: {rise: 0}\n")}, "services[0].check.rise"},
		{"missing name", []string{"agent", "--config", writeConfig(t, "host: h1\netcd_endpoints: [http://127.0.0.1:1]\nservices:\n  - address: 127.0.0.1:1\n")}, "services[0].name"},
		{"missing config flag", []string{"agent"}, "--config"},
		{"missing config file", []string{"agent", "--config", "/nonexistent/agent.yaml"}, "no such file"},
		{"bad watch service", []string{"watch", "bad/name"}, "SERVICE 1"},
		{"unknown flag", []string{"status", "--colour"}, "unknown flag"},
		{"bad member name", []string{"server", "--name", "a/b", "--data-dir", t.TempDir()}, "name"},
		{"bad cluster state", []string{"server", "--name", "a", "--initial-cluster-state", "old", "--data-dir", t.TempDir()}, "initial-cluster-state"},
		{"dev fail needs two args", []string{"dev", "fail", "dev-a"}, "accepts 2 arg"},
		{"switchover needs a service", []string{"switchover"}, "accepts 1 arg"},
		{"switchover of one service", []string{"switchover", "pg", "solr"}, "accepts 1 arg"},
		{"bad switchover service", []string{"switchover", "bad/name"}, "SERVICE"},
		{"bad switchover target", []string{"switchover", "pg", "--to", "ol db3"}, "--to"},
		{"switchover target needs a value", []string{"switchover", "pg", "--to"}, "--to"},
		{"pause needs a service", []string{"pause"}, "accepts 1 arg"},
		{"bad pause service", []string{"pause", "pg."}, "SERVICE"},
		{"resume of one service", []string{"resume", "pg", "solr"}, "accepts 1 arg"},
		{"bad resume service", []string{"resume", "pg/"}, "SERVICE"},
		{"events needs a service", []string{"events"}, "accepts 1 arg"},
		{"bad events service", []string{"events", "a b"}, "SERVICE"},
		{"negative events limit", []string{"events", "pg", "--limit", "-1"}, "--limit"},
		{"events limit not a number", []string{"events", "pg", "--limit", "many"}, "--limit"},
		{"render needs a template", []string{"render", "--out", "x.yaml"}, "--template"},
		{"render needs an output", []string{"render", "--template", writeConfig(t, "ok")}, "--out"},
		{"render takes no arguments", []string{"render", "extra"}, "extra"},
		{"render template does not parse", []string{"render", "--template", writeConfig(t, "{{ members "), "--out", "x.yaml"}, "agent.yaml:1"},
		{"render unknown helper", []string{"render", "--template", writeConfig(t, `{{ leader "pg" }}`), "--out", "x.yaml"}, `"leader" not defined`},
		{"render missing template", []string{"render", "--template", "/nonexistent/t.tmpl", "--out", "x.yaml"}, "no such file"},
		{"render negative debounce", []string{"render", "--template", writeConfig(t, "ok"), "--out", "x.yaml", "--debounce", "-1s"}, "debounce"},
		{"render debounce not a duration", []string{"render", "--template", writeConfig(t, "ok"), "--out", "x.yaml", "--debounce", "soon"}, "--debounce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tt.args, io.Discard, &stderr); got != 2 {
				t.Errorf("exit status = %d, want 2; stderr: %s", got, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr = %q, want it to name %q", stderr.String(), tt.want)
			}
		})
	}
}

func TestStatusWithNoRegistryFailsClearly(t *testing.T) {
	var stderr bytes.Buffer
	if got := run([]string{"status", "--registry", "127.0.0.1:1"}, io.Discard, &stderr); got != 1 {
		t.Fatalf("exit status = %d, want 1", got)
	}
	if !strings.Contains(stderr.String(), "no registry answered") {
		t.Fatalf("stderr = %q", stderr.String())
	}
}
