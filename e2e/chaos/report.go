package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run: one row per fault kind, every round, and
// every broken guarantee.
type Report struct {
	// Mode of the demo database: ask or noask (cluster.ModeAsk, ModeNoAsk).
	Mode       string        `json:"mode"`
	Seed       uint64        `json:"seed"`
	Rounds     int           `json:"rounds"`
	Started    time.Time     `json:"started"`
	Took       Millis        `json:"took_ms"`
	Kinds      []KindRow     `json:"kinds"`
	Total      KindRow       `json:"total"`
	RoundList  []RoundResult `json:"round_list"`
	Violations []string      `json:"violations"`
	// Writes acknowledged and accepted over the run, and primaries (epochs)
	// etcd recorded.
	AckedWrites  int `json:"acked_writes"`
	LoggedWrites int `json:"logged_writes"`
	Primaries    int `json:"primaries"`
}

// KindRow sums up the rounds of one fault kind.
type KindRow struct {
	Kind   string `json:"kind"`
	Rounds int    `json:"rounds"`
	// Moved: rounds that ended with a new primary; failover figures are
	// over those, from the fault to the first watcher told of the new one.
	Moved       int    `json:"moved"`
	FailoverP50 Millis `json:"failover_p50_ms"`
	FailoverP99 Millis `json:"failover_p99_ms"`
	FailoverMax Millis `json:"failover_max_ms"`
	// WriteGapMax: the longest stretch without an acknowledged write.
	WriteGapMax Millis `json:"write_gap_max_ms"`
	// Stale: writes the database refused for carrying a superseded epoch;
	// Refused: writes refused otherwise (not the primary, lease not
	// confirmed by the agent) or unanswered.
	Stale   int `json:"stale_rejected"`
	Refused int `json:"refused"`
	// LeaderHit: rounds whose fault also took down the etcd leader.
	LeaderHit int `json:"etcd_leader_hit"`
	// Diverged: late, unacknowledged writes of a superseded term that a
	// frozen host took on thaw (noask mode, host-freeze only): what a
	// rejoin must rewind. Not violations (see divergedExempt).
	Diverged   int `json:"diverged"`
	Violations int `json:"violations"`
}

// RoundResult is one round.
type RoundResult struct {
	N             int       `json:"n"`
	Kind          string    `json:"kind"`
	Target        string    `json:"target"`
	Injected      time.Time `json:"injected"`
	PrimaryBefore string    `json:"primary_before"`
	EpochBefore   int64     `json:"epoch_before"`
	PrimaryAfter  string    `json:"primary_after"`
	EpochAfter    int64     `json:"epoch_after"`
	Moved         bool      `json:"moved"`
	Failover      Millis    `json:"failover_ms"`
	WriteGap      Millis    `json:"write_gap_ms"`
	Stale         int       `json:"stale_rejected"`
	Refused       int       `json:"refused"`
	LeaderHit     bool      `json:"etcd_leader_hit"`
	Diverged      int       `json:"diverged"`
	Violations    []string  `json:"violations,omitempty"`
}

// Millis is a duration that prints and encodes as milliseconds.
type Millis float64

func ms(d time.Duration) Millis { return Millis(float64(d.Microseconds()) / 1000) }

func (m Millis) String() string { return fmt.Sprintf("%.0f", float64(m)) }

func (rn *runner) report(started time.Time, rounds []*round, h *history) *Report {
	// Broken guarantees go to the round during which they happened.
	roundAt := func(at time.Time) *round {
		into := rounds[0]
		for _, r := range rounds {
			if !at.Before(r.start) {
				into = r
			}
		}
		return into
	}
	mayDiverge := func(at time.Time) bool { return rn.noask() && roundAt(at).kind == HostFreeze }
	violations, diverged := check(h, mayDiverge)
	for _, v := range violations {
		r := roundAt(v.at)
		r.violations = append(r.violations, v.err.Error())
	}
	for _, at := range diverged {
		roundAt(at).diverged++
	}
	rep := &Report{Mode: rn.cfg.Cluster.Mode, Seed: rn.cfg.Seed, Rounds: len(rounds), Started: started, Took: ms(time.Since(started)),
		AckedWrites: len(h.acks), LoggedWrites: len(h.writes), Primaries: len(h.truth)}
	byKind := map[string][]*round{}
	for _, r := range rounds {
		byKind[r.kind] = append(byKind[r.kind], r)
		rep.RoundList = append(rep.RoundList, RoundResult{
			N: r.n, Kind: r.kind, Target: r.target, Injected: r.injected,
			PrimaryBefore: r.primaryBefore, EpochBefore: r.epochBefore,
			PrimaryAfter: r.primaryAfter, EpochAfter: r.epochAfter, Moved: r.moved,
			Failover: ms(r.failover), WriteGap: ms(r.writeGap), Stale: r.stale, Refused: r.refused, LeaderHit: r.leaderHit,
			Diverged: r.diverged, Violations: r.violations,
		})
		for _, v := range r.violations {
			rep.Violations = append(rep.Violations, fmt.Sprintf("round %d (%s): %s", r.n, r.kind, v))
		}
	}
	for _, k := range Kinds {
		if rs := byKind[k]; len(rs) > 0 {
			rep.Kinds = append(rep.Kinds, summarize(k, rs))
		}
	}
	rep.Total = summarize("all", rounds)
	return rep
}

func summarize(kind string, rs []*round) KindRow {
	row := KindRow{Kind: kind, Rounds: len(rs)}
	var fo []time.Duration
	for _, r := range rs {
		if r.moved {
			row.Moved++
			fo = append(fo, r.failover)
		}
		row.WriteGapMax = max(row.WriteGapMax, ms(r.writeGap))
		row.Stale += r.stale
		row.Refused += r.refused
		if r.leaderHit {
			row.LeaderHit++
		}
		row.Diverged += r.diverged
		row.Violations += len(r.violations)
	}
	slices.Sort(fo)
	if len(fo) > 0 {
		row.FailoverP50 = ms(quantile(fo, 0.50))
		row.FailoverP99 = ms(quantile(fo, 0.99))
		row.FailoverMax = ms(fo[len(fo)-1])
	}
	return row
}

// quantile of sorted durations, nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteTable prints the per-kind table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "fault\trounds\tetcd leader hit\tprimary moved\tfailover p50 ms\tp99 ms\tmax ms\twrite gap max ms\tstale writes rejected\tother refused\tdiverged\tviolations\t")
	for _, k := range append(slices.Clone(r.Kinds), r.Total) {
		fo := [3]string{"-", "-", "-"}
		if k.Moved > 0 {
			fo = [3]string{k.FailoverP50.String(), k.FailoverP99.String(), k.FailoverMax.String()}
		}
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n",
			k.Kind, k.Rounds, k.LeaderHit, k.Moved, fo[0], fo[1], fo[2], k.WriteGapMax, k.Stale, k.Refused, k.Diverged, k.Violations)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d rounds, %s mode, seed %d, %s; %d writes acknowledged, %d logged, %d primaries; %d violations\n",
		r.Rounds, r.Mode, r.Seed, time.Duration(float64(r.Took)*float64(time.Millisecond)).Round(time.Second),
		r.AckedWrites, r.LoggedWrites, r.Primaries, len(r.Violations))
	for _, v := range r.Violations {
		_, _ = fmt.Fprintln(w, "VIOLATION", v)
	}
	return err
}

// WriteJSON writes the whole report.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
