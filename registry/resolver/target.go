package resolver

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
)

// Role selects which instances of a service a target resolves to.
type Role string

// Roles accepted in a target's role parameter.
const (
	// RoleAuto is the role of a target without one: the primary of a
	// primary-mode service, every healthy member of a pool.
	RoleAuto Role = ""
	// RolePrimary is the acting primary only.
	RolePrimary Role = "primary"
	// RoleStandby is every healthy instance but the primary.
	RoleStandby Role = "standby"
	// RoleAny is every healthy instance.
	RoleAny Role = "any"
)

// ErrBadTarget is wrapped by every error about a target that cannot be
// resolved.
var ErrBadTarget = errors.New("bad understudy target")

// Target is a parsed understudy:///SERVICE?role=ROLE target.
type Target struct {
	Service string
	Role    Role
}

// ParseTarget parses the URL of a gRPC target of the understudy scheme.
func ParseTarget(u url.URL) (Target, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s (want %s:///SERVICE?role=primary|standby|any)",
			ErrBadTarget, u.String(), fmt.Sprintf(format, args...), Scheme)
	}
	if u.Host != "" {
		return Target{}, bad("authority %q is not supported: the registry is the client's", u.Host)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		name = u.Opaque
	}
	if err := registry.ValidateName("service", name); err != nil {
		return Target{}, bad("%v", err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Target{}, bad("query: %v", err)
	}
	t := Target{Service: name}
	for key, vals := range q {
		if key != "role" {
			return Target{}, bad("unknown parameter %q", key)
		}
		if len(vals) != 1 {
			return Target{}, bad("role given %d times", len(vals))
		}
		switch r := Role(vals[0]); r {
		case RolePrimary, RoleStandby, RoleAny:
			t.Role = r
		default:
			return Target{}, bad("unknown role %q", vals[0])
		}
	}
	return t, nil
}

// Addresses returns the addresses of v's instances that t selects, in the
// view's order (sorted by host).
func (t Target) Addresses(v *pb.View) []string {
	role := t.Role
	if role == RoleAuto {
		role = RoleAny
		if v.GetMode() == pb.Mode_MODE_PRIMARY {
			role = RolePrimary
		}
	}
	if role == RolePrimary {
		if a := v.GetPrimary().GetAddress(); a != "" {
			return []string{a}
		}
		return nil
	}
	var out []string
	for _, in := range registry.Healthy(v) {
		if role == RoleStandby && (v.GetMode() != pb.Mode_MODE_PRIMARY || in.GetHost() == v.GetPrimary().GetHost()) {
			continue
		}
		if a := in.GetAddress(); a != "" {
			out = append(out, a)
		}
	}
	return out
}
