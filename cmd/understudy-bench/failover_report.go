package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// failoverRow is one line of the failover table.
type failoverRow struct {
	kind    string // JSON name
	label   string // table name
	samples []time.Duration
	ttl     bool // also shown as a ratio to the TTL
}

func (r failoverResult) rows() []failoverRow {
	rows := []failoverRow{
		{kind: "graceful_switchover", label: "graceful switchover", samples: r.graceful},
		{kind: "check_failure_handoff", label: "check-failure handoff", samples: r.checkFail},
		{kind: "check_failure_after_detection", label: "  detection excluded", samples: r.afterDetect},
		{kind: "etcd_floor_resign_observe", label: "etcd floor (Resign→Observe)", samples: r.floor},
	}
	if r.crashRuns > 0 {
		rows = append(rows, failoverRow{kind: "crash", label: "crash, TTL " + failoverTTL.String(), samples: r.crash, ttl: true})
	}
	return rows
}

// printFailoverTable writes the failover figures as an aligned table with
// the notes needed to read it.
func printFailoverTable(w io.Writer, r failoverResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "failover (fault → watch subscriber sees new primary), no-op hooks; 3 agents, check every %v (rise 1, fall 1), election step %v\n",
		checkInterval, electionStep)
	tw := tabwriter.NewWriter(&b, 0, 8, 3, ' ', 0)
	// The writes land in b, a strings.Builder, which cannot fail.
	row := func(cells ...string) { _, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\n") }
	row("kind", "runs", "p50", "p99", "max")
	for _, fr := range r.rows() {
		cell := func(p float64) string {
			d := nearestRank(fr.samples, p)
			if !fr.ttl {
				return fmtDur(d)
			}
			return fmt.Sprintf("%s (%.2f×TTL)", fmtDur(d), ttlRatio(d))
		}
		row(fr.label, strconv.Itoa(len(fr.samples)), cell(50), cell(99), cell(100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(&b, "notes:\n")
	fmt.Fprintf(&b, "  percentiles are nearest-rank: with fewer than 100 runs p99 is the max\n")
	fmt.Fprintf(&b, "  graceful: t0 just before the control-key Put; check failure: t0 at the demo service's Fail;\n")
	fmt.Fprintf(&b, "    crash: t0 at the blackhole of the primary's etcd connection (keepalives stop, nothing revoked)\n")
	fmt.Fprintf(&b, "  detection excluded: from the first view showing the failure (%s %d, %s %d runs); %d runs had none before\n",
		signCritical, r.detectedBy[signCritical], signPrimaryGone, r.detectedBy[signPrimaryGone], r.detectedBy[signNone])
	fmt.Fprintf(&b, "    the new primary and count from the Fail; Fail → first such view p50 %s, max %s\n",
		fmtDur(nearestRank(r.detect, 50)), fmtDur(nearestRank(r.detect, 100)))
	if r.crashRuns > 0 {
		fmt.Fprintf(&b, "  crash: %d runs, not %d (-failover-crash-runs): each costs the TTL plus the old agent's re-registration,\n", r.crashRuns, r.runs)
		fmt.Fprintf(&b, "    which took p50 %s, max %s after the heal\n", fmtDur(nearestRank(r.rejoin, 50)), fmtDur(nearestRank(r.rejoin, 100)))
	}
	fmt.Fprintf(&b, "  %d warm-up runs of each kind but crash unmeasured; the subscriber saw %d views, %d new primaries, epochs always rising\n",
		failoverWarmup, r.views, r.primaries)
	var rc []string
	for _, h := range benchHosts {
		rc = append(rc, fmt.Sprintf("%s %d", h, r.reconnects[h]))
	}
	fmt.Fprintf(&b, "  agents' etcd connections re-opened outside the crash runs: %s\n", strings.Join(rc, ", "))
	_, err := io.WriteString(w, b.String())
	return err
}

func ttlRatio(d time.Duration) float64 { return float64(d) / float64(failoverTTL) }

// jsonFailover is the failover part of the -json file.
type jsonFailover struct {
	Hooks          string             `json:"hooks"`
	Agents         int                `json:"agents"`
	TTLSeconds     float64            `json:"ttl_seconds"`
	CheckInterval  float64            `json:"check_interval_ms"`
	ElectionStepMs float64            `json:"election_step_ms"`
	WarmupRuns     int                `json:"warmup_runs"`
	Kinds          []jsonFailoverKind `json:"kinds"`
	// Which sign of a check failure the subscriber saw first, per run.
	CheckFailureFirstSign map[string]int `json:"check_failure_first_sign"`
	CheckFailureDetectP50 float64        `json:"check_failure_detect_p50_ms"`
	CrashRejoinP50Ms      float64        `json:"crash_rejoin_p50_ms,omitempty"`
	Views                 int            `json:"subscriber_views"`
	NewPrimaries          int            `json:"subscriber_new_primaries"`
	Reconnects            map[string]int `json:"etcd_reconnects_outside_crash_runs"`
}

type jsonFailoverKind struct {
	Kind     string    `json:"kind"`
	Runs     int       `json:"runs"`
	P50Ms    float64   `json:"p50_ms"`
	P99Ms    float64   `json:"p99_ms"`
	MaxMs    float64   `json:"max_ms"`
	P50TTL   float64   `json:"p50_ttl_ratio,omitempty"`
	P99TTL   float64   `json:"p99_ttl_ratio,omitempty"`
	MaxTTL   float64   `json:"max_ttl_ratio,omitempty"`
	SampleMs []float64 `json:"samples_ms"`
}

func (r failoverResult) json() *jsonFailover {
	j := &jsonFailover{
		Hooks: "no-op", Agents: len(benchHosts), TTLSeconds: failoverTTL.Seconds(),
		CheckInterval: ms(checkInterval), ElectionStepMs: ms(electionStep), WarmupRuns: failoverWarmup,
		CheckFailureFirstSign: r.detectedBy, CheckFailureDetectP50: ms(nearestRank(r.detect, 50)),
		CrashRejoinP50Ms: ms(nearestRank(r.rejoin, 50)),
		Views:            r.views, NewPrimaries: r.primaries, Reconnects: r.reconnects,
	}
	round2 := func(f float64) float64 { return math.Round(f*100) / 100 }
	for _, fr := range r.rows() {
		k := jsonFailoverKind{
			Kind: fr.kind, Runs: len(fr.samples),
			P50Ms: ms(nearestRank(fr.samples, 50)), P99Ms: ms(nearestRank(fr.samples, 99)), MaxMs: ms(nearestRank(fr.samples, 100)),
		}
		if fr.ttl {
			k.P50TTL = round2(ttlRatio(nearestRank(fr.samples, 50)))
			k.P99TTL = round2(ttlRatio(nearestRank(fr.samples, 99)))
			k.MaxTTL = round2(ttlRatio(nearestRank(fr.samples, 100)))
		}
		for _, d := range fr.samples {
			k.SampleMs = append(k.SampleMs, ms(d))
		}
		j.Kinds = append(j.Kinds, k)
	}
	return j
}
