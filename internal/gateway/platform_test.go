package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

type platformEcho struct{ name string }

func (p platformEcho) ServePlatform(w http.ResponseWriter, r *http.Request, env, sub string) {
	fmt.Fprintf(w, "%s env=%s sub=%s", p.name, env, sub)
}

// TestPlatformEndpoints: s3.ENV and BUCKET.s3.ENV reach the platform's
// handler with the environment; from inside an environment only its own
// (allowFrom opens workloads, not state), and a workload is still routed.
func TestPlatformEndpoints(t *testing.T) {
	g := New(Config{})
	g.SetPlatform("s3", platformEcho{"s3"})
	g.SetPlatform("kv", platformEcho{"kv"})
	g.SetAllowFrom("dev", nil)
	g.SetAllowFrom("prod", []string{"dev"})
	up := startUpstream(t, "prod-api", nil)
	g.SetTargets([]Target{{Environment: "prod", Name: "api", Kind: v1.KindService, Endpoints: []Endpoint{up.endpoint()}}})
	do := func(h http.Handler, host string) (int, string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "http://"+host+"/k", nil)
		req.Host = host
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	fromDev := g.ForEnvironment("dev")
	// A cluster's pod of dev, told apart by its address.
	fromPod := g.ForCallers(func(net.IP) (string, bool) { return "dev", true })
	for _, tc := range []struct {
		h    http.Handler
		host string
		code int
		body string
	}{
		{g, "s3.dev.berth.localhost:8080", 200, "s3 env=dev sub="},
		{g, "photos.s3.prod.berth.localhost", 200, "s3 env=prod sub=photos"},
		{g, "a.b.s3.dev.berth.localhost", 200, "s3 env=dev sub=a.b"},
		{g, "kv.prod.berth.localhost", 200, "kv env=prod sub="},
		{g, "s3.nowhere.berth.localhost", 404, ""},
		{fromDev, "s3.dev.berth.localhost", 200, "s3 env=dev sub="},
		{fromDev, "photos.s3.dev.berth.localhost", 200, "s3 env=dev sub=photos"},
		{fromDev, "s3", 200, "s3 env=dev sub="},
		{fromDev, "kv.dev", 200, "kv env=dev sub="},
		{fromDev, "s3.prod.berth.localhost", 403, ""},
		{fromDev, "photos.s3.prod.berth.localhost", 403, ""},
		{fromDev, "kv.prod", 403, ""},
		{fromDev, "api.prod.berth.localhost", 200, ""},
		{fromPod, "s3.dev.berth.localhost", 200, "s3 env=dev sub="},
		{fromPod, "s3.prod.berth.localhost", 403, ""},
		{fromPod, "kv.prod", 403, ""},
	} {
		code, body := do(tc.h, tc.host)
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.host, code, body, tc.code, tc.body)
		}
	}
	// The environments' DNS answers the same names.
	if !g.Reachable("dev", "dev", "s3") || g.Reachable("dev", "prod", "s3") || !g.HasSubdomains("s3") || g.HasSubdomains("api") {
		t.Error("Reachable/HasSubdomains disagree with the routing")
	}
}
