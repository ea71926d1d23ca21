package guard

import (
	"errors"
	"testing"
	"time"
)

// The rules of the package doc, step by step on a table with a fake clock.
func TestTableRules(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	arm := func(epoch int64, fenceMS int) Arm {
		return Arm{Service: "pg", Epoch: epoch, FenceIn: time.Duration(fenceMS) * time.Millisecond, Demote: []string{"demote"}}
	}
	type step struct {
		at      int // ms after t0
		arm     *Arm
		disarm  int64 // epoch; 0: none
		finish  error // finish the running job with this (errOK for success)
		wantErr error
		wantDue int // jobs due after the step
		armed   bool
		overdue bool
	}
	errOK := errors.New("ok")
	a := func(x Arm) *Arm { return &x }
	tests := []struct {
		name  string
		steps []step
	}{
		{"fires at the fence point", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 299, armed: true},
			{at: 300, wantDue: 1, armed: true, overdue: true},
			{at: 310, finish: errOK},
		}},
		{"extending never fires", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 200, arm: a(arm(5, 300)), armed: true},
			{at: 400, arm: a(arm(5, 300)), armed: true},
			{at: 699, armed: true},
		}},
		{"shortening fires earlier", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 100, arm: a(arm(5, 0)), wantDue: 1, armed: true, overdue: true},
		}},
		{"disarm prevents firing", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 100, disarm: 5},
			{at: 1000},
		}},
		{"disarm of a lower epoch changes nothing", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 100, disarm: 4, armed: true},
			{at: 300, wantDue: 1, armed: true, overdue: true},
		}},
		{"lower epoch refused", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 10, arm: a(arm(4, 300)), wantErr: ErrStaleEpoch, armed: true},
		}},
		{"lower epoch than the fired one refused", []step{
			{at: 0, arm: a(arm(5, 0)), wantDue: 1, armed: true, overdue: true},
			{at: 10, finish: errOK},
			{at: 20, arm: a(arm(4, 300)), wantErr: ErrStaleEpoch},
		}},
		{"the fired epoch is over", []step{
			{at: 0, arm: a(arm(5, 0)), wantDue: 1, armed: true, overdue: true},
			{at: 10, finish: errOK},
			{at: 20, arm: a(arm(5, 300)), wantErr: ErrDemoted},
			{at: 30, arm: a(arm(6, 300)), armed: true},
		}},
		{"a late renewal does not undo a fence point", []step{
			{at: 0, arm: a(arm(5, 300)), armed: true},
			{at: 300, arm: a(arm(5, 300)), wantErr: ErrDemoting, armed: true, overdue: true, wantDue: 1},
		}},
		{"failures retried every second", []step{
			{at: 0, arm: a(arm(5, 100)), armed: true},
			{at: 100, wantDue: 1, armed: true, overdue: true},
			{at: 150, finish: errors.New("restarting"), armed: true, overdue: true},
			{at: 1149, armed: true, overdue: true},
			{at: 1150, wantDue: 1, armed: true, overdue: true},
			{at: 1200, finish: errOK},
		}},
		{"a higher epoch stops the retries", []step{
			{at: 0, arm: a(arm(5, 100)), armed: true},
			{at: 100, wantDue: 1, armed: true, overdue: true},
			{at: 150, finish: errors.New("restarting"), armed: true, overdue: true},
			{at: 200, arm: a(arm(7, 5000)), armed: true},
			{at: 1150, armed: true},
		}},
		{"no new epoch while a demote hook runs", []step{
			{at: 0, arm: a(arm(5, 100)), armed: true},
			{at: 100, wantDue: 1, armed: true, overdue: true},
			{at: 120, arm: a(arm(7, 5000)), wantErr: ErrDemoting, armed: true, overdue: true},
			{at: 150, finish: errOK},
			{at: 160, arm: a(arm(7, 5000)), armed: true},
		}},
		{"a disarm stops the retries", []step{
			{at: 0, arm: a(arm(5, 100)), armed: true},
			{at: 100, wantDue: 1, armed: true, overdue: true},
			{at: 150, finish: errors.New("restarting"), armed: true, overdue: true},
			{at: 200, disarm: 5},
			{at: 2000},
		}},
		{"bad requests", []step{
			{at: 0, arm: &Arm{Epoch: 1, Demote: []string{"x"}}, wantErr: ErrBadRequest},
			{at: 0, arm: &Arm{Service: "pg", Epoch: 1}, wantErr: ErrBadRequest},
			{at: 0, arm: &Arm{Service: "pg", Demote: []string{"x"}}, wantErr: ErrBadRequest},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable()
			var running []job
			for i, s := range tt.steps {
				now := at(s.at)
				if s.arm != nil {
					if err := tab.arm(*s.arm, now); !errors.Is(err, s.wantErr) || (err == nil) != (s.wantErr == nil) {
						t.Fatalf("step %d: arm: err = %v, want %v", i, err, s.wantErr)
					}
				}
				if s.disarm != 0 {
					tab.disarm("pg", s.disarm)
				}
				if s.finish != nil {
					err := s.finish
					if err == errOK {
						err = nil
					}
					tab.finish(running[0], err, now)
					running = running[1:]
				}
				due := tab.due(now)
				running = append(running, due...)
				if len(due) != s.wantDue {
					t.Errorf("step %d: %d due, want %d", i, len(due), s.wantDue)
				}
				if got := tab.armed(); got != s.armed {
					t.Errorf("step %d: armed = %v, want %v", i, got, s.armed)
				}
				if got := tab.overdue(now); got != s.overdue {
					t.Errorf("step %d: overdue = %v, want %v", i, got, s.overdue)
				}
			}
		})
	}
}

// A failed demote leaves the service armed with its error; a successful one
// records the epoch and time it fired.
func TestTableStatus(t *testing.T) {
	t0 := time.Now()
	tab := newTable()
	if err := tab.arm(Arm{Service: "pg", Epoch: 3, FenceIn: time.Second, Demote: []string{"d"}}, t0); err != nil {
		t.Fatal(err)
	}
	if st := tab.status(t0.Add(400 * time.Millisecond)); len(st) != 1 || !st[0].Armed || st[0].FenceIn != 600*time.Millisecond {
		t.Fatalf("status = %+v", st)
	}
	j := tab.due(t0.Add(time.Second))[0]
	tab.finish(j, errors.New("boom"), t0.Add(time.Second))
	st := tab.status(t0.Add(time.Second))[0]
	if !st.Armed || st.DemoteError != "boom" || st.Attempts != 1 || st.Fired {
		t.Fatalf("after a failure: %+v", st)
	}
	j = tab.due(t0.Add(2 * time.Second))[0]
	tab.finish(j, nil, t0.Add(2*time.Second))
	st = tab.status(t0.Add(2 * time.Second))[0]
	if st.Armed || !st.Fired || st.FiredEpoch != 3 || !st.FiredAt.Equal(t0.Add(2*time.Second)) || st.DemoteError != "" || st.Attempts != 2 {
		t.Fatalf("after success: %+v", st)
	}
}
