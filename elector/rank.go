package elector

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/understudy-dev/understudy/registry"
)

// Candidate is one instance as the ranking sees it.
type Candidate struct {
	Host       string
	Healthy    bool
	Freshness  int64
	Priority   int32
	NoFailover bool
}

// Ranking is the outcome of ranking for one host.
type Ranking struct {
	// Eligible is false when the host must not campaign; Why says why.
	Eligible bool
	Why      string
	// Lagging: not eligible only because the host lags the freshest known
	// value by more than max_lag; an operator may force it.
	Lagging bool
	// Rank 0 is the best candidate; the host waits Rank × step before trying.
	Rank int
}

// switchoverHeadStart is how many steps a named switchover target gets
// before any other candidate may try.
const switchoverHeadStart = 20

// Rank decides whether self may campaign and in which position. Candidates
// are ordered freshest first, then by priority (higher first), then by host
// name. maxLag < 0 disables the lag limit; otherwise self is not eligible
// when its freshness lags the freshest known value (reference, or any
// candidate's) by more than maxLag. excluded hosts (a primary that just
// handed over) never campaign. A non-empty target gets rank 0 and everyone
// else waits switchoverHeadStart steps more. force lets self (the target of
// a forced switchover) past the lag limit.
func Rank(self string, cands []Candidate, reference int64, maxLag int64, target string, excluded []string, force bool) Ranking {
	var me *Candidate
	eligible := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		if c.Host == self {
			me = &c
		}
		if c.Healthy && !c.NoFailover && !slices.Contains(excluded, c.Host) {
			eligible = append(eligible, c)
		}
		reference = max(reference, c.Freshness)
	}
	switch {
	case me == nil:
		return Ranking{Why: "not registered"}
	case !me.Healthy:
		return Ranking{Why: "check not passing"}
	case me.NoFailover:
		return Ranking{Why: "tagged " + registry.NoFailoverTag}
	case slices.Contains(excluded, self):
		return Ranking{Why: "handing over the role"}
	case maxLag >= 0 && reference-me.Freshness > maxLag && !force:
		return Ranking{Lagging: true, Why: fmt.Sprintf("freshness %d lags %d by more than max_lag %d", me.Freshness, reference, maxLag)}
	}
	slices.SortFunc(eligible, func(a, b Candidate) int {
		return cmp.Or(cmp.Compare(b.Freshness, a.Freshness), cmp.Compare(b.Priority, a.Priority), strings.Compare(a.Host, b.Host))
	})
	pos := slices.IndexFunc(eligible, func(c Candidate) bool { return c.Host == self })
	if target == "" {
		return Ranking{Eligible: true, Rank: pos}
	}
	if self == target {
		return Ranking{Eligible: true, Rank: 0}
	}
	return Ranking{Eligible: true, Rank: switchoverHeadStart + pos}
}
