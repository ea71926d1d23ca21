package registry

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// State is the keyspace under Prefix materialised in memory: every record
// decoded, and one immutable View per service kept up to date as changes are
// applied. It is not safe for concurrent use; the server's hub guards it.
//
// Views handed out are never modified afterwards, so they may be shared
// between goroutines and sent on many streams at once.
type State struct {
	rev      int64
	services map[string]*serviceRecords
	views    map[string]*pb.View
	hosts    map[string]*pb.Host
	members  map[string]*pb.Member
}

type serviceRecords struct {
	instances map[string]*pb.Instance // by host
	primary   *pb.Primary
	control   *pb.Control // operator requests; nil when absent
	rev       int64       // revision of the last change to any record of the service
}

// hasView reports whether the records make a view: a service needs an
// instance or a primary. A control record alone (a pause set before the
// first agent registers, or left behind by the last) makes none, but is
// kept so that it applies once instances appear.
func (r *serviceRecords) hasView() bool { return len(r.instances) > 0 || r.primary != nil }

func (r *serviceRecords) empty() bool { return !r.hasView() && r.control == nil }

// NewState returns an empty State at revision 0.
func NewState() *State {
	return &State{
		services: map[string]*serviceRecords{},
		views:    map[string]*pb.View{},
		hosts:    map[string]*pb.Host{},
		members:  map[string]*pb.Member{},
	}
}

// Revision is the revision of the last change applied.
func (s *State) Revision() int64 { return s.rev }

// SetRevision records that the state is complete up to rev, for changes that
// touch no key (an etcd watch progress notification, an empty resync).
func (s *State) SetRevision(rev int64) {
	if rev > s.rev {
		s.rev = rev
	}
}

// Apply applies a put (value non-nil) or a delete (value nil) of key at
// revision rev. It returns the new view of the service the change touched,
// or nil when no view changed. A removed service is returned as a view with
// no instances, and is forgotten afterwards (except for its control record,
// which makes no view but is kept so that a pause applies to the service's
// next instances).
//
// Control records set the views' paused flag; leader and event keys change
// no view.
//
// A key that cannot be parsed, or a value that cannot be decoded, returns an
// error; a bad value is treated as absent so the view shows only what can be
// understood, and the caller is expected to log the error and go on.
func (s *State) Apply(key string, value []byte, rev int64) (*pb.View, error) {
	s.SetRevision(rev)
	k, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	deleted := value == nil
	var decodeErr error
	decode := func(m proto.Message) bool {
		if deleted {
			return false
		}
		if err := Decode(value, m); err != nil {
			decodeErr = fmt.Errorf("key %s: %w", key, err)
			return false
		}
		return true
	}
	switch k.Kind {
	case KindHost:
		h := &pb.Host{}
		if decode(h) {
			h.Name = k.Host
			s.hosts[k.Host] = h
		} else {
			delete(s.hosts, k.Host)
		}
		return nil, decodeErr
	case KindMember:
		m := &pb.Member{}
		if decode(m) {
			m.Name = k.Member
			s.members[k.Member] = m
		} else {
			delete(s.members, k.Member)
		}
		return nil, decodeErr
	case KindInstance:
		if deleted && s.instance(k.Service, k.Host) == nil {
			return nil, nil // nothing known was removed
		}
		recs := s.records(k.Service)
		in := &pb.Instance{}
		if decode(in) {
			in.Host, in.Service = k.Host, k.Service // the key is authoritative
			recs.instances[k.Host] = in
		} else {
			delete(recs.instances, k.Host)
		}
		return s.rebuild(k.Service, rev), decodeErr
	case KindPrimary:
		if r := s.services[k.Service]; deleted && (r == nil || r.primary == nil) {
			return nil, nil // nothing known was removed
		}
		recs := s.records(k.Service)
		p := &pb.Primary{}
		if decode(p) {
			recs.primary = p
		} else {
			recs.primary = nil
		}
		return s.rebuild(k.Service, rev), decodeErr
	case KindControl:
		if deleted && s.services[k.Service] == nil {
			return nil, nil
		}
		recs := s.records(k.Service)
		wasPaused := recs.control.GetPaused()
		c := &pb.Control{}
		if decode(c) {
			recs.control = c
		} else {
			recs.control = nil // a control record that cannot be read pauses nothing
		}
		if recs.empty() {
			delete(s.services, k.Service)
		}
		// Views show only the pause flag: a switchover request alone
		// changes none.
		if !recs.hasView() || recs.control.GetPaused() == wasPaused {
			return nil, decodeErr
		}
		return s.rebuild(k.Service, rev), decodeErr
	default:
		// Leader and event keys feed the elector and the event log; views
		// show their effect through the primary record.
		return nil, nil
	}
}

func (s *State) records(service string) *serviceRecords {
	r, ok := s.services[service]
	if !ok {
		r = &serviceRecords{instances: map[string]*pb.Instance{}}
		s.services[service] = r
	}
	return r
}

func (s *State) instance(service, host string) *pb.Instance {
	if r := s.services[service]; r != nil {
		return r.instances[host]
	}
	return nil
}

func (s *State) rebuild(service string, rev int64) *pb.View {
	r := s.services[service]
	r.rev = rev
	v := BuildView(service, slices.Collect(maps.Values(r.instances)), r.primary, r.control.GetPaused(), rev)
	if !r.hasView() {
		if r.empty() {
			delete(s.services, service)
		}
		delete(s.views, service)
		return v
	}
	s.views[service] = v
	return v
}

// View returns the current view of service, or nil when it has neither
// instances nor a primary.
func (s *State) View(service string) *pb.View { return s.views[service] }

// Services returns the names of all services with a view, sorted.
func (s *State) Services() []string { return slices.Sorted(maps.Keys(s.views)) }

// Views returns the current views of all services, sorted by service.
func (s *State) Views() []*pb.View {
	out := make([]*pb.View, 0, len(s.views))
	for _, name := range s.Services() {
		out = append(out, s.views[name])
	}
	return out
}

// Hosts returns the registered hosts, sorted by name.
func (s *State) Hosts() []*pb.Host {
	out := make([]*pb.Host, 0, len(s.hosts))
	for _, name := range slices.Sorted(maps.Keys(s.hosts)) {
		out = append(out, s.hosts[name])
	}
	return out
}

// Member returns the record of an etcd member, or nil.
func (s *State) Member(name string) *pb.Member { return s.members[name] }
