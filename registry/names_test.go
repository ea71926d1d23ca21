package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the error; "" means valid
	}{
		{name: "single letter", in: "a"},
		{name: "single digit", in: "0"},
		{name: "host", in: "ol-db0"},
		{name: "dots and underscores", in: "db.primary_1"},
		{name: "upper case", in: "Postgres"},
		{name: "digits only", in: "1234"},
		{name: "max length", in: strings.Repeat("a", MaxNameLen)},
		{name: "empty", in: "", wantErr: "service is empty"},
		{name: "too long", in: strings.Repeat("a", MaxNameLen+1), wantErr: "longer than 63 characters"},
		{name: "leading dash", in: "-db", wantErr: "position 0"},
		{name: "trailing dash", in: "db-", wantErr: "position 2"},
		{name: "leading dot", in: ".db", wantErr: "position 0"},
		{name: "trailing underscore", in: "db_", wantErr: "position 2"},
		{name: "only dash", in: "-", wantErr: "position 0"},
		{name: "slash", in: "a/b", wantErr: "'/' at position 1"},
		{name: "space", in: "a b", wantErr: "' ' at position 1"},
		{name: "colon", in: "db:5432", wantErr: "':' at position 2"},
		{name: "non-ascii", in: "dbé", wantErr: "position 2"},
		{name: "nul", in: "a\x00b", wantErr: "position 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName("service", tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateName(%q) = %v, want nil", tt.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateName(%q) = nil, want error containing %q", tt.in, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("ValidateName(%q) = %v, want it to wrap ErrInvalidName", tt.in, err)
			}
			if got := err.Error(); !strings.Contains(got, tt.wantErr) {
				t.Errorf("ValidateName(%q) error = %q, want it to contain %q", tt.in, got, tt.wantErr)
			}
		})
	}
}

func TestValidateNameNamesField(t *testing.T) {
	for _, what := range []string{"host", "service", "zone", "member"} {
		err := ValidateName(what, "bad/name")
		if err == nil {
			t.Fatalf("ValidateName(%q, %q) = nil, want error", what, "bad/name")
		}
		if got := err.Error(); !strings.Contains(got, what+` "bad/name"`) {
			t.Errorf("ValidateName(%q, ...) error = %q, want it to name the field", what, got)
		}
	}
}
