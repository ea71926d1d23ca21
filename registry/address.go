package registry

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/go-sockaddr/template"
)

// ExpandAddress expands go-sockaddr templates in s, such as
// "{{ GetPrivateIP }}:5432" or "http://{{ GetInterfaceIP \"eth0\" }}:2380".
// A string without "{{" is returned unchanged.
func ExpandAddress(s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	out, err := expandSegments(s)
	if err != nil {
		return "", fmt.Errorf("address template %q: %w", s, err)
	}
	if out == "" || strings.Contains(out, "<no value>") || emptyHost(out) {
		return "", fmt.Errorf("address template %q expanded to %q: no address matched", s, out)
	}
	return out, nil
}

// expandSegments renders each {{ }} of s on its own, so that an IPv6
// address followed by a port can be bracketed: "{{ GetPrivateIP }}:5432"
// gives "[fd00::2]:5432", not the unusable "fd00::2:5432".
func expandSegments(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return "", fmt.Errorf("unclosed {{ at %q", s[i:])
		}
		j += i + 2
		out, err := template.Parse(s[i:j])
		if err != nil {
			return "", err
		}
		before, rest := s[:i], s[j:]
		if ip := net.ParseIP(out); ip != nil && ip.To4() == nil &&
			strings.HasPrefix(rest, ":") && !strings.HasSuffix(before, "[") {
			out = "[" + out + "]"
		}
		b.WriteString(before)
		b.WriteString(out)
		s = rest
	}
}

// emptyHost reports whether a host:port or URL has no host, as when a
// template matched no interface: ":5432", "http://:2380".
func emptyHost(s string) bool {
	hostport := s
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil {
			return true
		}
		hostport = u.Host
	}
	if hostport == "" {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	return err == nil && host == ""
}
