package registry

import (
	"fmt"
	"strings"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
)

// Short names for enum values in human-readable output.
func ModeName(m pb.Mode) string     { return lowerTrim(m.String(), "MODE_") }
func HealthName(h pb.Health) string { return lowerTrim(h.String(), "HEALTH_") }
func StatusName(s pb.Status) string { return strings.TrimPrefix(s.String(), "STATUS_") }
func EventKindName(k pb.EventKind) string {
	return strings.TrimPrefix(k.String(), "EVENT_KIND_")
}

func lowerTrim(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

// FormatView renders a view on one line for `understudy watch`:
//
//	cache pool READ_WRITE rev=12 2/3 healthy: dev-a@dc1 127.0.0.1:4001 passing, ...
//	db primary READ_WRITE rev=40 PAUSED primary=db-a@dc1 10.0.0.1:5432 epoch=31 2/2 healthy: ...
func FormatView(v *pb.View) string {
	var b strings.Builder
	b.WriteString(v.GetService())
	if v.GetMode() != pb.Mode_MODE_UNSPECIFIED {
		b.WriteString(" " + ModeName(v.GetMode()))
	}
	fmt.Fprintf(&b, " %s rev=%d", StatusName(v.GetStatus()), v.GetRevision())
	if v.GetStale() {
		b.WriteString(" STALE")
	}
	if v.GetPaused() {
		b.WriteString(" PAUSED")
	}
	if p := v.GetPrimary(); p != nil {
		fmt.Fprintf(&b, " primary=%s@%s %s epoch=%d", p.GetHost(), p.GetZone(), p.GetAddress(), p.GetEpoch())
	}
	if len(v.GetInstances()) == 0 {
		b.WriteString(" no instances")
		return b.String()
	}
	fmt.Fprintf(&b, " %d/%d healthy:", len(Healthy(v)), len(v.GetInstances()))
	for i, in := range v.GetInstances() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s@%s %s %s", in.GetHost(), in.GetZone(), in.GetAddress(), HealthName(in.GetHealth()))
	}
	return b.String()
}

// FormatEvent renders an event on one line for `understudy events`, with its
// time in the local time zone; a missing host is "-", a zero epoch is left
// out:
//
//	2025-03-01 14:02:11.042 PROMOTED ol-db1 epoch=4211 check failed on ol-db0
func FormatEvent(ev *pb.Event) string {
	var b strings.Builder
	if ev.GetAt() != nil {
		b.WriteString(ev.GetAt().AsTime().Local().Format(time.DateTime + ".000"))
	} else {
		b.WriteString("-")
	}
	host := ev.GetHost()
	if host == "" {
		host = "-"
	}
	fmt.Fprintf(&b, " %s %s", EventKindName(ev.GetKind()), host)
	if e := ev.GetEpoch(); e != 0 {
		fmt.Fprintf(&b, " epoch=%d", e)
	}
	if r := ev.GetReason(); r != "" {
		b.WriteString(" " + r)
	}
	return b.String()
}
