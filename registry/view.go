package registry

import (
	"slices"
	"strings"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// BuildView derives the view of one service from its records. It is pure:
// the same records always give the same view. instances may be in any order;
// the view lists them sorted by host. primary is nil while no primary acts.
func BuildView(service string, instances []*pb.Instance, primary *pb.Primary, rev int64) *pb.View {
	v := &pb.View{
		Service:   service,
		Mode:      pb.Mode_MODE_POOL,
		Instances: slices.Clone(instances),
		Revision:  rev,
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
	return v
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
