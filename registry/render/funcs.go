package render

import (
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"text/template"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// Data is the dot of a template: every service with at least one instance,
// by name, and the registry revision they are consistent with.
type Data struct {
	Revision int64
	Services map[string]*Service
}

// Service is the view of one service as templates see it.
type Service struct {
	Name string
	// Mode is "pool" or "primary".
	Mode string
	// Status is READ_WRITE, READ_ONLY or DOWN.
	Status string
	// Stale: the registry lost its etcd quorum and serves the last state it knew.
	Stale bool
	// Paused: an operator paused automatic failover.
	Paused   bool
	Revision int64
	// Primary is the acting primary of a primary-mode service, nil while there is none.
	Primary *Primary
	// Instances holds every instance, healthy or not, sorted by host.
	Instances []Instance
}

// Primary is the acting primary of a service.
type Primary struct {
	// Host is the agent's host name; Address where clients connect (host:port).
	Host, Address, Zone string
	// Epoch is the fencing token of this primary term.
	Epoch int64
}

// AddrHost is the host part of Address: 10.0.0.1 for 10.0.0.1:5432.
func (p *Primary) AddrHost() string { return addrHost(p.Address) }

// AddrPort is the port part of Address: 5432 for 10.0.0.1:5432; empty without one.
func (p *Primary) AddrPort() string { return addrPort(p.Address) }

// Instance is one instance of a service.
type Instance struct {
	// Host is the agent's host name; Address where clients connect (host:port).
	Host, Address, Zone string
	// Healthy is true while its check passes; Health says "passing" or "critical".
	Healthy bool
	Health  string
	// Role is "primary" or "standby" in a primary-mode service, empty in a pool.
	Role     string
	Tags     []string
	Priority int32
}

// AddrHost is the host part of Address.
func (i Instance) AddrHost() string { return addrHost(i.Address) }

// AddrPort is the port part of Address, empty without one.
func (i Instance) AddrPort() string { return addrPort(i.Address) }

// HasTag reports whether the instance carries tag.
func (i Instance) HasTag(tag string) bool { return slices.Contains(i.Tags, tag) }

func addrHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

func addrPort(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return port
	}
	return ""
}

// NewData builds the dot of a template from views.
func NewData(views []*pb.View, rev int64) *Data {
	d := &Data{Revision: rev, Services: make(map[string]*Service, len(views))}
	for _, v := range views {
		s := &Service{
			Name:     v.GetService(),
			Mode:     registry.ModeName(v.GetMode()),
			Status:   registry.StatusName(v.GetStatus()),
			Stale:    v.GetStale(),
			Paused:   v.GetPaused(),
			Revision: v.GetRevision(),
		}
		if p := v.GetPrimary(); p != nil {
			s.Primary = &Primary{Host: p.GetHost(), Address: p.GetAddress(), Zone: p.GetZone(), Epoch: p.GetEpoch()}
		}
		for _, in := range v.GetInstances() {
			s.Instances = append(s.Instances, Instance{
				Host: in.GetHost(), Address: in.GetAddress(), Zone: in.GetZone(),
				Healthy: in.GetHealth() == pb.Health_HEALTH_PASSING, Health: registry.HealthName(in.GetHealth()),
				Role: roleName(in.GetRole()), Tags: in.GetTags(), Priority: in.GetPriority(),
			})
		}
		slices.SortFunc(s.Instances, func(a, b Instance) int { return strings.Compare(a.Host, b.Host) })
		d.Services[s.Name] = s
	}
	return d
}

func roleName(r pb.Role) string {
	if r == pb.Role_ROLE_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// Funcs returns the template helpers over d. A service with no instances
// is unknown to the registry: it has no primary, no members, epoch 0 and
// status DOWN.
//
//	service "postgres"    the *Service, nil when unknown
//	primary "postgres"    the *Primary (.Host .Address .Epoch .AddrHost .AddrPort), nil when none
//	members "memcached"   healthy instances, sorted by host
//	standbys "postgres"   healthy instances that are not the primary (primary mode)
//	instances "memcached" every instance, sorted by host
//	healthy LIST          the healthy instances of LIST
//	epoch "postgres"      the primary's epoch, 0 when none
//	status "postgres"     READ_WRITE, READ_ONLY or DOWN
//	addresses LIST        the .Address of each instance
//	join SEP LIST         strings.Join: {{ members "m" | addresses | join "," }}
//	split SEP STRING      strings.Split
//	json VALUE            VALUE as JSON, also a valid YAML flow value
//	fail MESSAGE          stops the render: the last good file is kept
func Funcs(d *Data) template.FuncMap {
	service := func(name string) *Service { return d.Services[name] }
	instances := func(name string) []Instance {
		if s := service(name); s != nil {
			return s.Instances
		}
		return nil
	}
	healthy := func(in []Instance) []Instance {
		out := []Instance{}
		for _, i := range in {
			if i.Healthy {
				out = append(out, i)
			}
		}
		return out
	}
	return template.FuncMap{
		"service":   service,
		"instances": instances,
		"healthy":   healthy,
		"members":   func(name string) []Instance { return healthy(instances(name)) },
		"standbys": func(name string) []Instance {
			out := []Instance{}
			for _, i := range healthy(instances(name)) {
				if i.Role == "standby" {
					out = append(out, i)
				}
			}
			return out
		},
		"primary": func(name string) *Primary {
			if s := service(name); s != nil {
				return s.Primary
			}
			return nil
		},
		"epoch": func(name string) int64 {
			if s := service(name); s != nil && s.Primary != nil {
				return s.Primary.Epoch
			}
			return 0
		},
		"status": func(name string) string {
			if s := service(name); s != nil {
				return s.Status
			}
			return registry.StatusName(pb.Status_STATUS_DOWN)
		},
		"addresses": func(in []Instance) []string {
			out := make([]string, len(in))
			for i, x := range in {
				out[i] = x.Address
			}
			return out
		},
		"join":  func(sep string, s []string) string { return strings.Join(s, sep) },
		"split": func(sep, s string) []string { return strings.Split(s, sep) },
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
	}
}
