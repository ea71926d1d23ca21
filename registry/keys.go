package registry

import (
	"fmt"
	"strconv"
	"strings"
)

// Prefix is the root of everything understudy stores in etcd. The server
// keeps one watch on it.
const Prefix = "/understudy/v1/"

// Kind says what a key under Prefix holds.
type Kind int

// The kinds of keys, one per folder under Prefix.
const (
	KindUnknown  Kind = iota
	KindHost          // hosts/<host>: Host, agent lease
	KindInstance      // instances/<host>/<service>: Instance, agent lease
	KindLeader        // leaders/<service>: leader key, create revision = epoch
	KindPrimary       // primaries/<service>: Primary, written after promote
	KindControl       // control/<service>: operator requests
	KindEvent         // events/<service>/<revision>: history
	KindMember        // members/<name>: Member, zone of an etcd member
	KindMark          // marks/<service>: Mark, durable high-water mark, no lease
)

var kindFolders = map[Kind]string{
	KindHost:     "hosts",
	KindInstance: "instances",
	KindLeader:   "leaders",
	KindPrimary:  "primaries",
	KindControl:  "control",
	KindEvent:    "events",
	KindMember:   "members",
	KindMark:     "marks",
}

func (k Kind) String() string {
	if f, ok := kindFolders[k]; ok {
		return f
	}
	return "unknown"
}

// Key is a parsed key under Prefix.
type Key struct {
	Kind     Kind
	Host     string // hosts, instances
	Service  string // instances, leaders, primaries, control, events
	Member   string // members
	Revision int64  // events
}

// HostKey is where an agent registers its host.
func HostKey(host string) string { return Prefix + "hosts/" + host }

// HostsPrefix holds all hosts.
const HostsPrefix = Prefix + "hosts/"

// InstanceKey is where an agent registers one service instance.
func InstanceKey(host, service string) string {
	return Prefix + "instances/" + host + "/" + service
}

// InstancesPrefix holds all instances, grouped by host so that etcd RBAC can
// give each host write access to its own folder only.
const InstancesPrefix = Prefix + "instances/"

// HostInstancesPrefix holds the instances of one host.
func HostInstancesPrefix(host string) string { return Prefix + "instances/" + host + "/" }

// LeaderKey is the lease-bound key candidates race for.
func LeaderKey(service string) string { return Prefix + "leaders/" + service }

// PrimaryKey records the acting primary of a service.
func PrimaryKey(service string) string { return Prefix + "primaries/" + service }

// ControlKey holds operator requests for a service.
func ControlKey(service string) string { return Prefix + "control/" + service }

// MarkKey holds a service's durable high-water mark. It is bound to no
// lease: it outlives every primary.
func MarkKey(service string) string { return Prefix + "marks/" + service }

// EventKey is one entry of a service's history.
func EventKey(service string, rev int64) string {
	return fmt.Sprintf("%sevents/%s/%020d", Prefix, service, rev)
}

// EventsPrefix holds the history of one service, oldest first.
func EventsPrefix(service string) string { return Prefix + "events/" + service + "/" }

// MemberKey records the zone of one etcd member.
func MemberKey(name string) string { return Prefix + "members/" + name }

// MembersPrefix holds all member records.
const MembersPrefix = Prefix + "members/"

// ParseKey splits a key under Prefix into its parts. It returns an error for
// keys outside the prefix, of an unknown folder, or with invalid names.
func ParseKey(key string) (Key, error) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return Key{}, fmt.Errorf("key %q is not under %s", key, Prefix)
	}
	parts := strings.Split(rest, "/")
	bad := func(why string) (Key, error) { return Key{}, fmt.Errorf("key %q: %s", key, why) }
	want := func(n int) bool { return len(parts) == n }
	var k Key
	switch parts[0] {
	case "hosts":
		if !want(2) {
			return bad("want hosts/<host>")
		}
		k = Key{Kind: KindHost, Host: parts[1]}
	case "instances":
		if !want(3) {
			return bad("want instances/<host>/<service>")
		}
		k = Key{Kind: KindInstance, Host: parts[1], Service: parts[2]}
	case "leaders", "primaries", "control", "marks":
		if !want(2) {
			return bad("want " + parts[0] + "/<service>")
		}
		kind := map[string]Kind{"leaders": KindLeader, "primaries": KindPrimary, "control": KindControl, "marks": KindMark}[parts[0]]
		k = Key{Kind: kind, Service: parts[1]}
	case "events":
		if !want(3) {
			return bad("want events/<service>/<revision>")
		}
		rev, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || rev <= 0 {
			return bad("revision is not a positive number")
		}
		k = Key{Kind: KindEvent, Service: parts[1], Revision: rev}
	case "members":
		if !want(2) {
			return bad("want members/<name>")
		}
		k = Key{Kind: KindMember, Member: parts[1]}
	default:
		return bad("unknown folder " + strconv.Quote(parts[0]))
	}
	required := map[Kind][]struct{ what, v string }{
		KindHost:     {{"host", k.Host}},
		KindInstance: {{"host", k.Host}, {"service", k.Service}},
		KindLeader:   {{"service", k.Service}},
		KindPrimary:  {{"service", k.Service}},
		KindControl:  {{"service", k.Service}},
		KindMark:     {{"service", k.Service}},
		KindEvent:    {{"service", k.Service}},
		KindMember:   {{"member", k.Member}},
	}
	for _, n := range required[k.Kind] {
		if err := ValidateName(n.what, n.v); err != nil {
			return bad(err.Error())
		}
	}
	return k, nil
}
