package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

// TestEnvironmentListenersRouteWithinTheirEnvironment: a request on an
// environment's listener reaches only that environment's targets, another
// environment's only when it lists the caller in allowFrom, and the user's
// listener still reaches everything.
func TestEnvironmentListenersRouteWithinTheirEnvironment(t *testing.T) {
	devOrders := startUpstream(t, "dev-orders", nil)
	prodOrders := startUpstream(t, "prod-orders", nil)
	prodAPI := startUpstream(t, "prod-api", nil)
	g, userURL, _ := startGateway(t, Config{},
		Target{Environment: "dev", Name: "orders", Kind: v1.KindService, Endpoints: []Endpoint{devOrders.endpoint()}},
		Target{Environment: "prod", Name: "orders", Kind: v1.KindService, Endpoints: []Endpoint{prodOrders.endpoint()}},
		Target{Environment: "prod", Name: "api", Kind: v1.KindService, RoutePath: "/api", Endpoints: []Endpoint{prodAPI.endpoint()}},
	)
	g.SetAllowFrom("dev", nil)
	g.SetAllowFrom("prod", nil)
	ls := NewListeners(g, 0, slog.New(slog.NewTextHandler(testLogWriter{t}, nil)))
	t.Cleanup(func() { ls.Shutdown(t.Context()) })
	// Two loopback addresses stand in for the two bridges.
	if err := ls.Listen(t.Context(), "dev", net.IPv4(127, 0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := ls.Listen(t.Context(), "prod", net.IPv4(127, 0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := ls.Listen(t.Context(), "dev", net.IPv4(127, 0, 0, 1)); err != nil {
		t.Fatalf("Listen again: %v", err)
	}
	dev, prod := ls.Addr("dev"), ls.Addr("prod")
	userAddr := strings.TrimPrefix(userURL, "http://")

	get := func(addr, host, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s (Host %s): %v", addr, path, host, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return res.StatusCode, string(b)
		}
		var e echo
		json.Unmarshal(b, &e)
		return res.StatusCode, e.Upstream
	}
	check := func(addr, host, path string, wantCode int, want string) {
		t.Helper()
		code, got := get(addr, host, path)
		if code != wantCode || !strings.Contains(got, want) {
			t.Errorf("GET %s%s Host %s = %d %s; want %d %s", addr, path, host, code, got, wantCode, want)
		}
	}

	check(dev, "orders", "/", 200, "dev-orders")
	check(dev, "orders.dev", "/", 200, "dev-orders")
	check(dev, "orders.dev.berth.localhost", "/", 200, "dev-orders")
	check(prod, "orders", "/", 200, "prod-orders")
	check(prod, "orders:80", "/api/x", 200, "prod-orders")
	check(prod, "10.0.0.1", "/api/x", 200, "prod-api")
	check(dev, "10.0.0.1", "/api/x", 404, "in environment dev") // prod's path
	check(dev, "orders.prod.berth.localhost", "/", 403, "environment dev may not call environment prod")
	check(dev, "orders.prod", "/", 403, "may not call")
	check(dev, "nothing", "/", 404, "no service nothing in environment dev")
	// The user's listener is not an environment's: it reaches everything.
	check(userAddr, "orders.prod.berth.localhost", "/", 200, "prod-orders")
	check(userAddr, "x", "/api", 200, "prod-api")
	if g.Reachable("dev", "prod", "orders") || !g.Reachable("dev", "dev", "orders") || g.Reachable("dev", "dev", "api") {
		t.Errorf("Reachable disagrees with routing before allowFrom")
	}

	g.SetAllowFrom("prod", []string{"dev"})
	check(dev, "orders.prod.berth.localhost", "/", 200, "prod-orders")
	check(dev, "orders", "/", 200, "dev-orders") // a bare name stays in dev
	check(prod, "orders.dev.berth.localhost", "/", 403, "environment prod may not call environment dev")
	if !g.Reachable("dev", "prod", "orders") || g.Reachable("prod", "dev", "orders") {
		t.Errorf("Reachable disagrees with routing after allowFrom")
	}

	ls.Unlisten("prod")
	if _, err := http.Get("http://" + prod + "/"); err == nil {
		t.Errorf("prod's listener still answers after Unlisten")
	}
	g.ForgetEnvironment("prod")
	check(dev, "orders.prod.berth.localhost", "/", 403, "may not call")
}
