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
	out, err := template.Parse(s)
	if err != nil {
		return "", fmt.Errorf("address template %q: %w", s, err)
	}
	if out == "" || strings.Contains(out, "<no value>") || emptyHost(out) {
		return "", fmt.Errorf("address template %q expanded to %q: no address matched", s, out)
	}
	return out, nil
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
