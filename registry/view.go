package registry

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// NoFailoverTag on an instance keeps it from ever taking the primary role:
// it never campaigns and cannot be named as a switchover target.
const NoFailoverTag = "nofailover"

// BuildView derives the view of one service from its records. It is pure:
// the same records always give the same view, and the records are never
// modified (they may be shared with other views and goroutines). instances
// may be in any order; the view lists them sorted by host. primary is nil
// while no primary acts; paused is the operator's pause flag from the
// service's control record.
//
// In a primary-mode view every instance carries its role: ROLE_PRIMARY on
// the host of the primary record, ROLE_STANDBY on the others. An instance
// whose stored role differs from the derived one is cloned before the role
// is set.
func BuildView(service string, instances []*pb.Instance, primary *pb.Primary, paused bool, rev int64) *pb.View {
	v := &pb.View{
		Service:   service,
		Mode:      pb.Mode_MODE_POOL,
		Instances: slices.Clone(instances),
		Revision:  rev,
		Paused:    paused,
	}
	slices.SortFunc(v.Instances, func(a, b *pb.Instance) int { return strings.Compare(a.GetHost(), b.GetHost()) })
	for _, in := range v.Instances {
		if in.GetMode() == pb.Mode_MODE_PRIMARY {
			v.Mode = pb.Mode_MODE_PRIMARY
		}
	}
	if primary != nil {
		v.Mode = pb.Mode_MODE_PRIMARY
	}
	v.Status = status(v.Mode, v.Instances, primary)
	if v.Mode == pb.Mode_MODE_PRIMARY {
		v.Primary = primary
	}
	for i, in := range v.Instances {
		if role := roleOf(v.Mode, in.GetHost(), primary); in.GetRole() != role {
			c := proto.CloneOf(in)
			c.Role = role
			v.Instances[i] = c
		}
	}
	return v
}

// roleOf is the role of the instance on host in a view of the given mode.
func roleOf(mode pb.Mode, host string, primary *pb.Primary) pb.Role {
	switch {
	case mode != pb.Mode_MODE_PRIMARY:
		return pb.Role_ROLE_UNSPECIFIED
	case primary != nil && primary.GetHost() == host:
		return pb.Role_ROLE_PRIMARY
	default:
		return pb.Role_ROLE_STANDBY
	}
}

func status(mode pb.Mode, instances []*pb.Instance, primary *pb.Primary) pb.Status {
	healthy := slices.ContainsFunc(instances, func(in *pb.Instance) bool {
		return in.GetHealth() == pb.Health_HEALTH_PASSING
	})
	switch {
	case mode == pb.Mode_MODE_PRIMARY && primary != nil:
		return pb.Status_STATUS_READ_WRITE
	case mode == pb.Mode_MODE_PRIMARY && healthy:
		return pb.Status_STATUS_READ_ONLY
	case mode == pb.Mode_MODE_POOL && healthy:
		return pb.Status_STATUS_READ_WRITE
	default:
		return pb.Status_STATUS_DOWN
	}
}

// Healthy returns the instances of v whose check passes.
func Healthy(v *pb.View) []*pb.Instance {
	var out []*pb.Instance
	for _, in := range v.GetInstances() {
		if in.GetHealth() == pb.Health_HEALTH_PASSING {
			out = append(out, in)
		}
	}
	return out
}
