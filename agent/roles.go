package agent

import (
	"fmt"
	"net/http"
)

// roleHandler serves the role endpoints HAProxy-style load balancers check:
//
//	GET /primary/SERVICE  200 only on the acting primary
//	GET /replica/SERVICE  200 on a healthy instance that is not the primary
//	GET /health/SERVICE   200 when the instance's check passes
//
// Anything else is 503 (404 for a service this host does not run).
func (a *Agent) roleHandler() http.Handler {
	mux := http.NewServeMux()
	for _, ep := range []struct {
		path string
		ok   func(in *instance) bool
	}{
		{"/primary/", func(in *instance) bool { return in.elector != nil && in.elector.Acting() }},
		{"/replica/", func(in *instance) bool { return in.healthy() && (in.elector == nil || !in.elector.Acting()) }},
		{"/health/", func(in *instance) bool { return in.healthy() }},
	} {
		mux.HandleFunc("GET "+ep.path+"{service}", func(w http.ResponseWriter, r *http.Request) {
			in := a.instance(r.PathValue("service"))
			if in == nil {
				http.Error(w, "no such service on this host", http.StatusNotFound)
				return
			}
			if !ep.ok(in) {
				http.Error(w, "no", http.StatusServiceUnavailable)
				return
			}
			_, _ = fmt.Fprintln(w, "yes")
		})
	}
	return mux
}

func (a *Agent) instance(service string) *instance {
	for _, in := range a.instances {
		if in.cfg.Name == service {
			return in
		}
	}
	return nil
}
