package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHealthySet(t *testing.T) {
	all := []string{"a", "b", "c"}
	tests := []struct {
		name          string
		before        []string
		ok            []bool
		now, down, up []string
	}{
		{"all answer", all, []bool{true, true, true}, all, nil, nil},
		{"one stops", all, []bool{true, false, true}, []string{"a", "c"}, []string{"b"}, nil},
		{"still down: no change", []string{"a", "c"}, []bool{true, false, true}, []string{"a", "c"}, nil, nil},
		{"back", []string{"a", "c"}, []bool{true, true, true}, all, nil, []string{"b"}},
		{"none answer", all, []bool{false, false, false}, nil, all, nil},
		{"one of none back", nil, []bool{false, false, true}, []string{"c"}, nil, []string{"c"}},
		{"swap, configured order kept", []string{"c", "a"}, []bool{false, true, true}, []string{"b", "c"}, []string{"a"}, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now, down, up := healthySet(all, tt.before, tt.ok)
			if diff := cmp.Diff(tt.now, now); diff != "" {
				t.Errorf("now (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.down, down); diff != "" {
				t.Errorf("down (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.up, up); diff != "" {
				t.Errorf("up (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDialAddr(t *testing.T) {
	for ep, want := range map[string]string{
		"http://127.0.0.1:2379":   "127.0.0.1:2379",
		"https://etcd-1.lan:2379": "etcd-1.lan:2379",
	} {
		if got := dialAddr(ep); got != want {
			t.Errorf("dialAddr(%q) = %q, want %q", ep, got, want)
		}
	}
}
