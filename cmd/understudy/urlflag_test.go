package main

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"
)

func TestURLListKeepsTemplatesWhole(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"http://localhost:2380"}},
		{[]string{`--peer=http://{{ GetInterfaceIP "eth0" }}:2380`}, []string{`http://{{ GetInterfaceIP "eth0" }}:2380`}},
		{[]string{`--peer=http://a:2380, http://{{ GetAllInterfaces | include "network" "10.0.0.0/8,192.168.0.0/16" | attr "address" }}:2380`},
			[]string{"http://a:2380", `http://{{ GetAllInterfaces | include "network" "10.0.0.0/8,192.168.0.0/16" | attr "address" }}:2380`}},
		{[]string{"--peer=http://a:2380", "--peer=http://b:2380"}, []string{"http://a:2380", "http://b:2380"}},
	} {
		var got []string
		f := pflag.NewFlagSet("t", pflag.ContinueOnError)
		urlListVar(f, &got, "peer", []string{"http://localhost:2380"}, "")
		if err := f.Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.args, got, tc.want)
		}
	}
}
