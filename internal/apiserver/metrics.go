package apiserver

import (
	"net/http"
)

// WithMetrics returns the API's handler with GET /metrics answered by
// metrics (the Prometheus registry). The route sits in front of the API's
// mux rather than in it so that the composition root decides whether it
// exists at all, and whether it needs the token: by default it does, as
// every other path does (Prometheus sends one with
// authorization.credentials_file); public serves it to anyone who can reach
// the API address, for scrapers that cannot hold a token. Metrics name
// every environment and workload, hence the default.
func (s *Server) WithMetrics(metrics http.Handler, public bool) http.Handler {
	route := metrics
	if !public {
		route = s.authorized(metrics)
	}
	route = s.recoverPanics(route)
	api := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			api.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, r, s.log, notAllowed([]string{http.MethodGet}, "%s is not allowed on /metrics; allowed: GET", r.Method))
			return
		}
		route.ServeHTTP(w, r)
	})
}
