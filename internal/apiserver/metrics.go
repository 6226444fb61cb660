package apiserver

import (
	"net/http"
)

// Metrics serves a scrape. visible says which environments' series the
// caller may see; nil: every series, the platform's own included.
type Metrics interface {
	ServeMetrics(w http.ResponseWriter, r *http.Request, visible func(env string) bool)
}

// WithMetrics returns the API's handler with GET /metrics answered by
// metrics (the Prometheus registry). The route sits in front of the API's
// mux rather than in it so that the composition root decides whether it
// exists at all, and whether it needs the token: by default it does, as
// every other path does (Prometheus sends one with
// authorization.credentials_file), and a token scoped to some
// environments sees only their series; public serves every series to
// anyone who can reach the API address, for scrapers that cannot hold a
// token. Metrics name every environment and workload, hence the default.
func (s *Server) WithMetrics(metrics Metrics, public bool) http.Handler {
	var route http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		metrics.ServeMetrics(w, r, nil)
	})
	if !public {
		route = s.authorized(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := s.principal(r)
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			var visible func(string) bool
			if !p.All() {
				visible = p.In
			}
			metrics.ServeMetrics(w, r, visible)
		}))
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
