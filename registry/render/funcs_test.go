package render_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/registry/render"
)

// Every helper against the "normal" and "failover" scenarios, including
// services the registry does not know.
func TestFuncs(t *testing.T) {
	tests := []struct {
		name, scenario, tmpl, want string
	}{
		{"primary", "normal", `{{ with primary "postgres" }}{{ .Host }} {{ .Address }} {{ .Epoch }} {{ .AddrHost }} {{ .AddrPort }}{{ end }}`, "ol-db0 10.0.1.20:5432 4211 10.0.1.20 5432"},
		{"no primary", "failover", `{{ with primary "postgres" }}{{ .Host }}{{ else }}none{{ end }}`, "none"},
		{"primary of a pool", "normal", `{{ if primary "memcached" }}yes{{ else }}none{{ end }}`, "none"},
		{"primary of an unknown service", "normal", `{{ if primary "nosuch" }}yes{{ else }}none{{ end }}`, "none"},
		{"members sorted by host", "normal", `{{ range members "memcached" }}{{ .Host }} {{ end }}`, "ol-cache0 ol-cache2 "},
		{"instances", "normal", `{{ range instances "memcached" }}{{ .Host }}={{ .Health }}/{{ .Healthy }} {{ end }}`, "ol-cache0=passing/true ol-cache1=critical/false ol-cache2=passing/true "},
		{"healthy", "normal", `{{ len (healthy (instances "postgres")) }}`, "2"},
		{"standbys", "normal", `{{ range standbys "postgres" }}{{ .Host }}:{{ .Role }} {{ end }}`, "ol-db1:standby "},
		{"roles", "normal", `{{ range instances "postgres" }}{{ .Host }}:{{ .Role }} {{ end }}{{ range instances "memcached" }}[{{ .Role }}]{{ end }}`, "ol-db0:primary ol-db1:standby ol-db2:standby [][][]"},
		{"members of an unknown service", "normal", `{{ len (members "nosuch") }} {{ members "nosuch" | addresses | json }}`, "0 []"},
		{"epoch", "normal", `{{ epoch "postgres" }} {{ epoch "memcached" }} {{ epoch "nosuch" }}`, "4211 0 0"},
		{"status", "failover", `{{ status "postgres" }} {{ status "memcached" }} {{ status "nosuch" }}`, "READ_ONLY READ_WRITE DOWN"},
		{"service", "normal", `{{ with service "postgres" }}{{ .Name }} {{ .Mode }} {{ .Status }} {{ .Revision }} {{ .Stale }} {{ .Paused }}{{ end }}`, "postgres primary READ_WRITE 4300 false false"},
		{"dot", "normal", `{{ .Revision }}{{ range $name, $s := .Services }} {{ $name }}{{ end }}`, "5000 infobase memcached postgres solr"},
		{"join addresses", "normal", `{{ members "memcached" | addresses | join "," }}`, "10.0.1.30:11211,10.0.1.32:11211"},
		{"split", "normal", `{{ range split ":" "a:b" }}[{{ . }}]{{ end }}`, "[a][b]"},
		{"json", "normal", `{{ members "infobase" | addresses | json }}`, `["10.0.1.40:8080","10.20.0.41:8080"]`},
		{"HasTag", "normal", `{{ range instances "infobase" }}{{ .HasTag "x" }}{{ end }}`, "falsefalse"},
	}
	all := scenarios()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := render.Parse(tt.name, tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := render.Execute(tmpl, all[tt.scenario], 5000)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// Templates that cannot render say why, and stop.
func TestFuncErrors(t *testing.T) {
	tests := []struct{ name, tmpl, want string }{
		{"fail", `before{{ fail "no primary" }}`, "no primary"},
		{"field of a missing primary", `{{ (primary "nosuch").Address }}`, "nil pointer"},
		{"missing map key", `{{ .Services.nosuch }}`, `map has no entry for key "nosuch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := render.Parse(tt.name, tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := render.Execute(tmpl, scenarios()["normal"], 1); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tmpl")
	bad := filepath.Join(dir, "bad.tmpl")
	for path, body := range map[string]string{good: "ok\n", bad: "{{ members \"x\" \n"} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	tests := []struct {
		name     string
		cfg      render.Config
		want     string
		template bool // wraps ErrTemplate
	}{
		{"no template", render.Config{Out: out}, "template is empty", false},
		{"no out", render.Config{Template: good}, "out is empty", false},
		{"negative debounce", render.Config{Template: good, Out: out, Debounce: -time.Second}, "debounce", false},
		{"max-wait below debounce", render.Config{Template: good, Out: out, Debounce: time.Second, MaxWait: time.Millisecond}, "max-wait", false},
		{"missing template", render.Config{Template: filepath.Join(dir, "nosuch"), Out: out}, "no such file", true},
		{"unparsable template", render.Config{Template: bad, Out: out}, "bad.tmpl:1", true},
		{"unknown function", render.Config{Template: writeTemp(t, dir, `{{ leader "pg" }}`), Out: out}, `"leader" not defined`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, render.ErrTemplate) != tt.template {
				t.Errorf("New: %v, want an error with %q (ErrTemplate: %v)", err, tt.want, tt.template)
			}
		})
	}
}

func writeTemp(t *testing.T, dir, body string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "*.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// WriteFile creates new files 0644, keeps an existing file's mode, writes
// through a symbolic link to its target, and leaves no temporary file.
func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	check := func(path, want string, mode os.FileMode) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", path, got, err, want)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v (%v), want %v", path, fi.Mode().Perm(), err, mode)
		}
	}
	fresh := filepath.Join(dir, "fresh.yaml")
	if err := render.WriteFile(fresh, []byte("a\n")); err != nil {
		t.Fatal(err)
	}
	check(fresh, "a\n", 0o644)

	private := filepath.Join(dir, "private.yaml")
	if err := os.WriteFile(private, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := render.WriteFile(private, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	check(private, "new\n", 0o640)

	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("private.yaml", link); err != nil {
		t.Fatal(err)
	}
	if err := render.WriteFile(link, []byte("via link\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symbolic link (%v)", link, err)
	}
	check(private, "via link\n", 0o640)

	if err := render.WriteFile(filepath.Join(dir, "nosuch", "x"), []byte("x")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}
