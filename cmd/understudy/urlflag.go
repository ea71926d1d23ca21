package main

import (
	"strings"

	"github.com/spf13/pflag"
)

// urlList is a list flag of URLs that may hold go-sockaddr templates:
// values split on commas outside {{ }}, and quotes pass through, so
// --listen-peer-urls 'http://{{ GetInterfaceIP "eth0" }}:2380' works (a
// plain string-slice flag parses its value as CSV and rejects the quotes).
// Repeating the flag appends.
type urlList struct {
	urls *[]string
	set  bool
}

func urlListVar(f *pflag.FlagSet, p *[]string, name string, value []string, usage string) {
	*p = value
	f.Var(&urlList{urls: p}, name, usage)
}

func (u *urlList) Type() string { return "urls" }

func (u *urlList) String() string { return strings.Join(*u.urls, ",") }

func (u *urlList) Set(v string) error {
	if !u.set {
		*u.urls, u.set = nil, true // the first use replaces the default
	}
	*u.urls = append(*u.urls, splitOutsideTemplates(v)...)
	return nil
}

// splitOutsideTemplates splits s on commas that are not inside {{ }}.
func splitOutsideTemplates(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			depth++
			i++
		case strings.HasPrefix(s[i:], "}}") && depth > 0:
			depth--
			i++
		case s[i] == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// GetSlice, Append and Replace make urlList a pflag.SliceValue.
func (u *urlList) GetSlice() []string { return append([]string(nil), *u.urls...) }

func (u *urlList) Append(v string) error {
	*u.urls = append(*u.urls, v)
	return nil
}

func (u *urlList) Replace(vs []string) error {
	*u.urls = append([]string(nil), vs...)
	return nil
}
