package chaos

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/e2e/kvdemo"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func w(host string, epoch int64, ms int, writer string, seq int64) kvdemo.Write {
	return kvdemo.Write{Host: host, Epoch: epoch, AcceptedAt: at(ms), Writer: writer, Seq: seq}
}

func errsOf(vs []violation) []error {
	var out []error
	for _, v := range vs {
		out = append(out, v.err)
	}
	return out
}

func wantOnly(t *testing.T, vs []violation, want error) {
	t.Helper()
	errs := errsOf(vs)
	if want == nil {
		if len(errs) > 0 {
			t.Fatalf("violations %v, want none", errs)
		}
		return
	}
	if len(errs) == 0 || !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, want) }) {
		t.Fatalf("violations %v, want %v", errs, want)
	}
}

func TestTerms(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writes []kvdemo.Write
		want   error
	}{
		{"one term after another", []kvdemo.Write{w("a", 5, 0, "x", 1), w("a", 5, 10, "x", 2), w("b", 9, 20, "x", 3)}, nil},
		{"logs merged out of order", []kvdemo.Write{w("b", 9, 20, "x", 3), w("a", 5, 10, "x", 2), w("a", 5, 0, "x", 1)}, nil},
		{"an old primary wrote after the new one began", []kvdemo.Write{w("a", 5, 0, "x", 1), w("b", 9, 20, "x", 2), w("a", 5, 30, "y", 1)}, ErrTermsOverlap},
		{"an older term overlaps a term two epochs later", []kvdemo.Write{w("a", 5, 0, "x", 1), w("b", 9, 10, "x", 2), w("a", 5, 40, "y", 1), w("b", 12, 30, "x", 3)}, ErrTermsOverlap},
		{"one epoch on two hosts", []kvdemo.Write{w("a", 5, 0, "x", 1), w("b", 5, 10, "x", 2)}, ErrEpochShared},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs, diverged := checkTerms(tc.writes, nil, func(time.Time) bool { return false })
			wantOnly(t, vs, tc.want)
			if len(diverged) > 0 {
				t.Errorf("diverged %v, want none", diverged)
			}
		})
	}
}

// An old primary's late writes: acknowledged ones always break a
// guarantee; unacknowledged ones only outside the tolerated window, where
// they are counted as diverged instead.
func TestLateWritesAckedLoggedOrDiverged(t *testing.T) {
	writes := []kvdemo.Write{
		w("a", 5, 0, "x", 1), w("b", 9, 20, "x", 2), w("b", 9, 25, "y", 2),
		w("a", 5, 30, "y", 1), w("a", 5, 35, "x", 3), // late
	}
	ack := func(writer string, seq int64, host string, epoch int64) Ack {
		return Ack{Writer: writer, Seq: seq, Host: host, Epoch: epoch}
	}
	base := []Ack{ack("x", 1, "a", 5), ack("x", 2, "b", 9), ack("y", 2, "b", 9)}
	never := func(time.Time) bool { return false }
	always := func(time.Time) bool { return true }
	for _, tc := range []struct {
		name         string
		acks         []Ack
		mayDiverge   func(time.Time) bool
		want         []error
		wantDiverged int
	}{
		{"unacknowledged, not tolerated", base, never, []error{ErrTermsOverlap}, 0},
		{"unacknowledged, tolerated", base, always, nil, 2},
		{"one acknowledged", append(slices.Clone(base), ack("y", 1, "a", 5)), always, []error{ErrAckedTermsOverlap, ErrTermsOverlap}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs, diverged := checkTerms(writes, tc.acks, tc.mayDiverge)
			errs := errsOf(vs)
			if len(errs) != len(tc.want) {
				t.Fatalf("violations %v, want %v", errs, tc.want)
			}
			for i := range errs {
				if !errors.Is(errs[i], tc.want[i]) {
					t.Errorf("violation %d: %v, want %v", i, errs[i], tc.want[i])
				}
			}
			if len(diverged) != tc.wantDiverged {
				t.Errorf("%d diverged, want %d", len(diverged), tc.wantDiverged)
			}
		})
	}
	// One violation an epoch, however many late writes, with the count.
	vs, _ := checkTerms(writes, base, never)
	if len(vs) != 1 || !strings.Contains(vs[0].err.Error(), "logged 2 writes") {
		t.Errorf("violations %v, want one of 2 late writes", errsOf(vs))
	}
}

func TestAcks(t *testing.T) {
	logged := []kvdemo.Write{w("a", 5, 0, "x", 1), w("b", 9, 20, "x", 2)}
	wantOnly(t, checkAcks(logged, []Ack{{Writer: "x", Seq: 1, Host: "a", Epoch: 5}, {Writer: "x", Seq: 2, Host: "b", Epoch: 9}}), nil)
	wantOnly(t, checkAcks(logged, []Ack{{Writer: "x", Seq: 3, Host: "b", Epoch: 9}}), ErrAckLost)
	wantOnly(t, checkAcks(logged, []Ack{{Writer: "x", Seq: 2, Host: "a", Epoch: 9}}), ErrAckLost)
}

func TestWatchers(t *testing.T) {
	s := func(epochs ...int64) []Sighting {
		var out []Sighting
		for i, e := range epochs {
			out = append(out, Sighting{Epoch: e, At: at(i)})
		}
		return out
	}
	truth := []int64{5, 9, 14}
	for _, tc := range []struct {
		name string
		seen []Sighting
		want error
	}{
		{"every change in order", s(5, 9, 14), nil},
		{"started after the first change", s(9, 14), nil},
		{"missed one", s(5, 14), ErrWatchMissed},
		{"out of order", s(5, 14, 9), ErrWatchOrder},
		{"saw nothing", nil, ErrWatchMissed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantOnly(t, checkWatchers(map[string][]Sighting{"w": tc.seen}, truth), tc.want)
		})
	}
}

func TestScheduleCoversEveryKindInEachBlock(t *testing.T) {
	got := Schedule(2*len(Kinds)+3, 42, Kinds)
	if len(got) != 2*len(Kinds)+3 {
		t.Fatalf("%d rounds", len(got))
	}
	for b := 0; b < 2; b++ {
		block := slices.Clone(got[b*len(Kinds) : (b+1)*len(Kinds)])
		slices.Sort(block)
		want := slices.Clone(Kinds)
		slices.Sort(want)
		if !slices.Equal(block, want) {
			t.Errorf("block %d: %v", b, block)
		}
	}
	if !slices.Equal(got, Schedule(2*len(Kinds)+3, 42, Kinds)) {
		t.Error("the same seed gave another order")
	}
	if slices.Equal(got, Schedule(2*len(Kinds)+3, 43, Kinds)) {
		t.Error("another seed gave the same order")
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if q := quantile(d, 0.5); q != 5 {
		t.Errorf("p50 %v", q)
	}
	if q := quantile(d, 0.99); q != 10 {
		t.Errorf("p99 %v", q)
	}
	if q := quantile(d[:1], 0.99); q != 1 {
		t.Errorf("p99 of one %v", q)
	}
}
