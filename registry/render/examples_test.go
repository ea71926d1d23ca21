package render_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/render"
)

var update = flag.Bool("update", false, "rewrite the golden files of deploy/examples/testdata")

const examplesDir = "../../deploy/examples"

func inst(service, host, zone, addr string, mode pb.Mode, health pb.Health) *pb.Instance {
	return &pb.Instance{Host: host, Service: service, Zone: zone, Address: addr, Mode: mode, Health: health}
}

const (
	pool    = pb.Mode_MODE_POOL
	primary = pb.Mode_MODE_PRIMARY
	up      = pb.Health_HEALTH_PASSING
	down    = pb.Health_HEALTH_CRITICAL
)

// scenarios are fixed registry states, built the way the server builds
// views, that the example templates are rendered against.
func scenarios() map[string][]*pb.View {
	pg := []*pb.Instance{
		inst("postgres", "ol-db0", "dc1", "10.0.1.20:5432", primary, up),
		inst("postgres", "ol-db2", "dc1", "10.0.1.22:5432", primary, down),
		inst("postgres", "ol-db1", "cloud-a", "10.20.0.21:5432", primary, up),
	}
	cache := []*pb.Instance{
		inst("memcached", "ol-cache2", "dc1", "10.0.1.32:11211", pool, up),
		inst("memcached", "ol-cache0", "dc1", "10.0.1.30:11211", pool, up),
		inst("memcached", "ol-cache1", "cloud-a", "10.20.0.31:11211", pool, down),
	}
	web := []*pb.Instance{
		inst("infobase", "ol-web0", "dc1", "10.0.1.40:8080", pool, up),
		inst("infobase", "ol-web1", "cloud-a", "10.20.0.41:8080", pool, up),
	}
	solr := []*pb.Instance{
		inst("solr", "ol-solr0", "dc1", "10.0.1.50:8983", primary, up),
		inst("solr", "ol-solr1", "cloud-a", "10.20.0.51:8983", primary, up),
	}
	allDown := func(ins []*pb.Instance) []*pb.Instance {
		out := make([]*pb.Instance, len(ins))
		for i, in := range ins {
			c := inst(in.GetService(), in.GetHost(), in.GetZone(), in.GetAddress(), in.GetMode(), down)
			out[i] = c
		}
		return out
	}
	pgPrimary := &pb.Primary{Host: "ol-db0", Zone: "dc1", Address: "10.0.1.20:5432", Epoch: 4211}
	solrPrimary := &pb.Primary{Host: "ol-solr0", Zone: "dc1", Address: "10.0.1.50:8983", Epoch: 977}
	return map[string][]*pb.View{
		// Everything up: postgres and solr each with a primary and a
		// healthy standby, one of three memcached members down.
		"normal": {
			registry.BuildView("postgres", pg, pgPrimary, false, 4300),
			registry.BuildView("memcached", cache, nil, false, 4290),
			registry.BuildView("infobase", web, nil, false, 4100),
			registry.BuildView("solr", solr, solrPrimary, false, 980),
		},
		// The postgres primary is gone and no standby promoted yet (READ_ONLY);
		// the solr primary moved to the cloud zone.
		"failover": {
			registry.BuildView("postgres", pg[1:], nil, false, 4310),
			registry.BuildView("memcached", cache, nil, false, 4290),
			registry.BuildView("infobase", web[1:], nil, false, 4305),
			registry.BuildView("solr", solr, &pb.Primary{Host: "ol-solr1", Zone: "cloud-a", Address: "10.20.0.51:8983", Epoch: 4308}, false, 4308),
		},
		// Every cache member and postgres standby fails its check while the
		// registry answers: empty lists, not missing keys.
		"caches-down": {
			registry.BuildView("postgres", append(pg[:1:1], allDown(pg[1:])...), pgPrimary, false, 4400),
			registry.BuildView("memcached", allDown(cache), nil, false, 4401),
		},
	}
}

// Each example template renders each scenario to its golden file in
// deploy/examples/testdata (go test -run TestExampleTemplates -update
// rewrites them), or fails on purpose where the template says it should.
func TestExampleTemplates(t *testing.T) {
	tests := []struct {
		template, scenario string
		wantErr            string
	}{
		{"app-services.yaml.tmpl", "normal", ""},
		{"app-services.yaml.tmpl", "failover", "postgres has no primary"},
		{"app-services.yaml.tmpl", "caches-down", ""},
		{"haproxy.cfg.tmpl", "normal", ""},
		{"haproxy.cfg.tmpl", "failover", ""},
		{"haproxy.cfg.tmpl", "caches-down", ""},
	}
	all := scenarios()
	for _, tt := range tests {
		t.Run(tt.template+"/"+tt.scenario, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(examplesDir, tt.template))
			if err != nil {
				t.Fatal(err)
			}
			tmpl, err := render.Parse(tt.template, string(src))
			if err != nil {
				t.Fatal(err)
			}
			got, err := render.Execute(tmpl, all[tt.scenario], 5000)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("render: %v, want an error with %q; output:\n%s", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(examplesDir, "testdata", strings.TrimSuffix(tt.template, ".tmpl")+"."+tt.scenario+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestExampleTemplates -update writes it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s against %s differs from %s:\n--- got\n%s--- want\n%s", tt.template, tt.scenario, golden, got, want)
			}
		})
	}
}

// What a Python app would load from the rendered YAML: the primary's host
// and port (an integer), the healthy standbys, the healthy cache members in
// host order; and empty lists, not nulls, when nothing is healthy.
func TestExampleAppYAMLLoads(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(examplesDir, "app-services.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := render.Parse("app", string(src))
	if err != nil {
		t.Fatal(err)
	}
	type hostPort struct {
		Host string `yaml:"host"`
		Port int    `yaml:"port"`
	}
	type config struct {
		DB       hostPort   `yaml:"db_parameters"`
		Replicas []hostPort `yaml:"db_replicas"`
		Memcache []string   `yaml:"memcache_servers"`
	}
	load := func(scenario string) config {
		t.Helper()
		out, err := render.Execute(tmpl, scenarios()[scenario], 1)
		if err != nil {
			t.Fatal(err)
		}
		var c config
		dec := yaml.NewDecoder(strings.NewReader(string(out)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v\n%s", scenario, err, out)
		}
		if c.Replicas == nil || c.Memcache == nil {
			t.Errorf("%s: a list is null, want [] when empty:\n%s", scenario, out)
		}
		return c
	}
	c := load("normal")
	if c.DB != (hostPort{"10.0.1.20", 5432}) {
		t.Errorf("db_parameters %+v, want 10.0.1.20:5432", c.DB)
	}
	if len(c.Replicas) != 1 || c.Replicas[0] != (hostPort{"10.20.0.21", 5432}) {
		t.Errorf("db_replicas %+v, want the one healthy standby", c.Replicas)
	}
	if got := strings.Join(c.Memcache, ","); got != "10.0.1.30:11211,10.0.1.32:11211" {
		t.Errorf("memcache_servers %s, want the two healthy members by host", got)
	}
	c = load("caches-down")
	if len(c.Replicas) != 0 || len(c.Memcache) != 0 || c.DB.Host != "10.0.1.20" {
		t.Errorf("caches-down: %+v, want the primary and empty lists", c)
	}
}
