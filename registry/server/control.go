package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/eventlog"
)

// Operator requests (switchover, pause, resume) are decided on a
// linearizable read of the service's records, not on the hub's views, which
// may trail etcd or be stale; and they are written in transactions guarded by
// the mod revisions of what was read, so a decision never rests on records
// that changed in between.
const (
	// controlTimeout bounds each operator request's work in etcd.
	controlTimeout = 5 * time.Second
	// switchoverPending is how long a switchover request blocks another one
	// while its primary still holds the role. An older request has failed
	// (no standby took over in time) and may be replaced.
	switchoverPending = 30 * time.Second
	// switchoverAttempts bounds the re-reads when the records change between
	// the read and the write.
	switchoverAttempts = 3
)

// records is one service's records read from etcd at one revision.
type records struct {
	service   string
	rev       int64
	instances []*pb.Instance // sorted by host, readable ones only
	modRevs   map[string]int64
	primary   *pb.Primary // nil when absent or unreadable
	control   *pb.Control // nil when absent or unreadable
	view      *pb.View
}

// modRev is the mod revision key had at the read, 0 when it was absent.
func (r *records) modRev(key string) int64 { return r.modRevs[key] }

func (r *records) instance(host string) *pb.Instance {
	for _, in := range r.instances {
		if in.GetHost() == host {
			return in
		}
	}
	return nil
}

// readRecords reads the instances, primary and control records of service
// in one linearizable transaction. Instances are stored by host, so it reads
// every instance and keeps the service's. Records it cannot decode count as
// absent, as in the hub's views.
func (s *service) readRecords(ctx context.Context, service string) (*records, error) {
	resp, err := s.client.Txn(ctx).Then(
		clientv3.OpGet(registry.InstancesPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(registry.PrimaryKey(service)),
		clientv3.OpGet(registry.ControlKey(service)),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("reading %s from etcd: %w", service, err)
	}
	r := &records{service: service, rev: resp.Header.Revision, modRevs: map[string]int64{}}
	for _, op := range resp.Responses {
		for _, kv := range op.GetResponseRange().GetKvs() {
			k, err := registry.ParseKey(string(kv.Key))
			if err != nil || k.Service != service {
				continue
			}
			r.modRevs[string(kv.Key)] = kv.ModRevision
			switch k.Kind {
			case registry.KindInstance:
				in := &pb.Instance{}
				if registry.Decode(kv.Value, in) == nil {
					in.Host, in.Service = k.Host, k.Service
					r.instances = append(r.instances, in)
				}
			case registry.KindPrimary:
				p := &pb.Primary{}
				if registry.Decode(kv.Value, p) == nil {
					r.primary = p
				}
			case registry.KindControl:
				c := &pb.Control{}
				if registry.Decode(kv.Value, c) == nil {
					r.control = c
				}
			}
		}
	}
	slices.SortFunc(r.instances, func(a, b *pb.Instance) int { return cmp.Compare(a.GetHost(), b.GetHost()) })
	r.view = registry.BuildView(service, r.instances, r.primary, r.control.GetPaused(), r.rev)
	return r, nil
}

// refuse returns an ErrRefused error for a request on service.
func refuse(what, service, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s: %s", ErrRefused, what, service, fmt.Sprintf(format, args...))
}

// checkSwitchover says why a switchover of r's service to (a host, or ""
// for the best ranked standby) cannot be requested at now, or nil when it
// can.
//
// A forced request (force, with to) may also name a host when there is no
// primary: it lets that host take a free role although it lags the
// service's high-water mark.
func checkSwitchover(r *records, to string, force bool, now time.Time) error {
	no := func(format string, args ...any) error { return refuse("switchover of", r.service, format, args...) }
	primary := r.primary.GetHost()
	switch {
	case len(r.instances) == 0:
		return no("no instance is registered")
	case r.view.GetMode() != pb.Mode_MODE_PRIMARY:
		return no("it is a %s service: only primary-mode services have a primary to hand over", registry.ModeName(r.view.GetMode()))
	case r.primary == nil && !force:
		return no("it has no primary (status %s): there is nothing to hand over", registry.StatusName(r.view.GetStatus()))
	case r.control.GetPaused():
		return no("it is paused: resume it first")
	}
	if c := r.control; c.GetSwitchoverFrom() != "" && c.GetSwitchoverFrom() == primary {
		if age := now.Sub(c.GetRequestedAt().AsTime()); age < switchoverPending {
			return no("a switchover from %s to %s is already pending (requested %s ago)",
				primary, orBest(c.GetSwitchoverTo()), age.Round(time.Second))
		}
	}
	if to == "" {
		if !slices.ContainsFunc(r.instances, func(in *pb.Instance) bool { return in.GetHost() != primary && eligible(in) }) {
			return no("no standby can take over from %s: none is passing its check without the %s tag", primary, registry.NoFailoverTag)
		}
		return nil
	}
	target := r.instance(to)
	switch {
	case to == primary:
		return no("%s is already primary", to)
	case target == nil:
		return no("%s is unknown: it runs no instance of %s", to, r.service)
	case target.GetHealth() != pb.Health_HEALTH_PASSING:
		why := registry.HealthName(target.GetHealth())
		if target.GetHealth() == pb.Health_HEALTH_UNSPECIFIED {
			why = "no check result yet"
		}
		if out := target.GetCheckOutput(); out != "" {
			why += ": " + out
		}
		return no("%s is unhealthy (%s)", to, why)
	case slices.Contains(target.GetTags(), registry.NoFailoverTag):
		return no("%s is tagged %s", to, registry.NoFailoverTag)
	}
	return nil
}

// eligible reports whether in may take the primary role.
func eligible(in *pb.Instance) bool {
	return in.GetHealth() == pb.Health_HEALTH_PASSING && !slices.Contains(in.GetTags(), registry.NoFailoverTag)
}

func orBest(to string) string { return cmp.Or(to, "the best ranked standby") }

// Switchover writes a switchover request to the service's control record
// for its primary's agent to act on, after checking that the request can
// succeed now. See checkSwitchover for what it refuses.
func (s *service) Switchover(ctx context.Context, req *pb.SwitchoverRequest) (*pb.SwitchoverResponse, error) {
	service, to, force := req.GetService(), req.GetTo(), req.GetForce()
	if err := registry.ValidateName("service", service); err != nil {
		return nil, toStatus(err)
	}
	if force && to == "" {
		return nil, toStatus(fmt.Errorf("%w: force: needs to, the host that may take over past the high-water mark", ErrInvalidArgument))
	}
	if to != "" {
		if err := registry.ValidateName("to", to); err != nil {
			return nil, toStatus(err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var from string
	for attempt := 1; ; attempt++ {
		r, err := s.readRecords(ctx, service)
		if err != nil {
			return nil, toStatus(err)
		}
		if current := r.primary.GetHost(); from != "" && current != from {
			return nil, toStatus(refuse("switchover of", service, "the primary changed meanwhile (was %s, now %s)", from, cmp.Or(current, "none")))
		}
		now := time.Now()
		if err := checkSwitchover(r, to, force, now); err != nil {
			return nil, toStatus(err)
		}
		from = r.primary.GetHost()
		control := &pb.Control{SwitchoverFrom: from, SwitchoverTo: to, Force: force, RequestedAt: timestamppb.New(now)}
		guards := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(registry.PrimaryKey(service)), "=", r.modRev(registry.PrimaryKey(service))),
			clientv3.Compare(clientv3.ModRevision(registry.ControlKey(service)), "=", r.modRev(registry.ControlKey(service))),
		}
		if to != "" {
			key := registry.InstanceKey(to, service)
			guards = append(guards, clientv3.Compare(clientv3.ModRevision(key), "=", r.modRev(key)))
		}
		resp, err := s.client.Txn(ctx).If(guards...).
			Then(clientv3.OpPut(registry.ControlKey(service), registry.MustEncode(control))).Commit()
		if err != nil {
			return nil, toStatus(fmt.Errorf("writing the switchover request of %s: %w", service, err))
		}
		if !resp.Succeeded {
			if attempt == switchoverAttempts {
				return nil, toStatus(refuse("switchover of", service, "its records kept changing while the request was checked; try again"))
			}
			continue // read again and check again
		}
		reason := "operator switchover to " + orBest(to)
		if force {
			reason = "operator forced " + to + " to take over, past the high-water mark: writes only the last primary had may be lost"
		}
		s.event(ctx, &pb.Event{
			Service: service, Kind: pb.EventKind_EVENT_KIND_SWITCHOVER_REQUESTED,
			Host: from, Epoch: r.primary.GetEpoch(), Reason: reason, At: control.GetRequestedAt(),
		}, resp.Header.Revision)
		return &pb.SwitchoverResponse{From: from, To: to}, nil
	}
}

// Pause stops automatic failover for a service: it sets paused in the
// control record and drops any pending switchover. Pausing a paused service
// changes nothing.
func (s *service) Pause(ctx context.Context, req *pb.PauseRequest) (*pb.PauseResponse, error) {
	if err := s.setPaused(ctx, req.GetService(), true); err != nil {
		return nil, toStatus(err)
	}
	return &pb.PauseResponse{}, nil
}

// Resume ends a pause, leaving no switchover pending. Resuming a service
// that is not paused changes nothing.
func (s *service) Resume(ctx context.Context, req *pb.ResumeRequest) (*pb.ResumeResponse, error) {
	if err := s.setPaused(ctx, req.GetService(), false); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ResumeResponse{}, nil
}

func (s *service) setPaused(ctx context.Context, service string, paused bool) error {
	if err := registry.ValidateName("service", service); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	r, err := s.readRecords(ctx, service)
	if err != nil {
		return err
	}
	if len(r.instances) == 0 {
		return fmt.Errorf("%w %q: no instance is registered", ErrUnknownService, service)
	}
	if r.control.GetPaused() == paused {
		return nil
	}
	resp, err := s.client.Put(ctx, registry.ControlKey(service), registry.MustEncode(&pb.Control{Paused: paused}))
	if err != nil {
		return fmt.Errorf("writing the control record of %s: %w", service, err)
	}
	ev := &pb.Event{Service: service, Kind: pb.EventKind_EVENT_KIND_PAUSED, Reason: "paused by operator"}
	if !paused {
		ev.Kind, ev.Reason = pb.EventKind_EVENT_KIND_RESUMED, "resumed by operator"
	}
	if c := r.control; paused && c.GetSwitchoverFrom() != "" {
		ev.Reason += fmt.Sprintf("; switchover from %s to %s dropped", c.GetSwitchoverFrom(), orBest(c.GetSwitchoverTo()))
	}
	s.event(ctx, ev, resp.Header.Revision)
	return nil
}

// event records ev at rev. The request it records is already written and
// is what agents act on, so a failure is logged, not returned: the operator
// would otherwise retry a request that took effect.
func (s *service) event(ctx context.Context, ev *pb.Event, rev int64) {
	if err := eventlog.Write(ctx, s.client, ev, rev); err != nil {
		s.log.Warn("registry: could not record an event", "service", ev.GetService(),
			"kind", registry.EventKindName(ev.GetKind()), "revision", rev, "err", err)
	}
}

// ListEvents returns the recent role changes of a service, oldest first.
func (s *service) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	if err := registry.ValidateName("service", req.GetService()); err != nil {
		return nil, toStatus(err)
	}
	if req.GetLimit() < 0 {
		return nil, toStatus(fmt.Errorf("%w: limit %d is negative", ErrInvalidArgument, req.GetLimit()))
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	evs, err := eventlog.List(ctx, s.client, req.GetService(), int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ListEventsResponse{Events: evs}, nil
}
