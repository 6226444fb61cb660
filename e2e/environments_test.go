package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// TestEnvironmentsAreSealed: two environments with the same service names
// resolve and route within themselves; from a dev container, prod's
// containers, prod's gateway address, the API and any other host port are
// unreachable (dropped in the kernel); allowing dev into prod opens exactly
// NAME.prod.berth.localhost from dev, not the way back.
func TestEnvironmentsAreSealed(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	t.Cleanup(func() { removeHostChain(s) })
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Environment
metadata: {name: dev}
---
apiVersion: berth.dev/v1
kind: Environment
metadata: {name: prod}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: orders, environment: dev}
spec: {image: %[1]s}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: client, environment: dev}
spec: {image: %[1]s}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: hello, environment: dev}
spec: {image: %[1]s, scale: {max: 1, idleTimeout: 60s}, timeout: 30s}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: orders, environment: prod}
spec: {image: %[1]s}
`, echoV1), "apply", "-f", "-", "--wait", "--timeout", "2m")

	// An environment without workloads gets its network at once.
	s.mustBerth("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: staging}\n", "apply", "-f", "-")
	envs := map[string]*v1.Environment{}
	testutil.WaitForState(t, 20*time.Second, "every environment's network in its status", func() (bool, string) {
		for _, name := range []string{"dev", "prod", "staging"} {
			var e v1.Environment
			if err := s.client.Get(ctx, v1.KindEnvironment, "", name, &e); err != nil || e.Status.Subnet == "" || e.Status.Bridge == "" {
				return false, fmt.Sprintf("%s: %+v %v", name, e.Status, err)
			}
			envs[name] = &e
		}
		return true, ""
	})
	if envs["dev"].Status.Subnet == envs["prod"].Status.Subnet || envs["prod"].Status.Subnet == envs["staging"].Status.Subnet {
		t.Fatalf("environments share a subnet: dev %s, prod %s, staging %s", envs["dev"].Status.Subnet, envs["prod"].Status.Subnet, envs["staging"].Status.Subnet)
	}
	if _, err := net.InterfaceByName(envs["staging"].Status.Bridge); err != nil {
		t.Fatalf("staging's bridge %s: %v", envs["staging"].Status.Bridge, err)
	}
	devGW, prodGW := gatewayOf(t, envs["dev"]), gatewayOf(t, envs["prod"])

	devOrders := s.service("dev", "orders").Status.Instances[0]
	prodOrders := s.service("prod", "orders").Status.Instances[0]

	// call asks the echo instance NAME.ENV to GET u (with Host host, if
	// set) and answers what it got: the callee's status and body, or 502
	// and the dial error.
	call := func(env, name, u, host string) (int, string) {
		t.Helper()
		q := url.Values{"url": {u}, "timeout": {"2s"}}
		if host != "" {
			q.Set("host", host)
		}
		code, body, err := s.gatewayGet(name+"."+env+".berth.localhost", "/call?"+q.Encode())
		if err != nil {
			t.Fatalf("%s.%s → %s: %v", name, env, u, err)
		}
		return code, body
	}
	hostnameOf := func(body string) string {
		var r struct{ Hostname string }
		json.Unmarshal([]byte(body), &r)
		return r.Hostname
	}

	// Same names, each environment its own: DNS answers the bridge's
	// gateway address and the gateway routes within dev.
	for _, u := range []string{"http://orders/", "http://orders.dev.berth.localhost/", "http://orders.dev/"} {
		code, body := call("dev", "client", u, "")
		if code != 200 || hostnameOf(body) != devOrders.Name {
			t.Fatalf("dev client → %s = %d %s; want dev's orders (%s)", u, code, body, devOrders.Name)
		}
	}
	if code, body := call("prod", "orders", "http://orders/", ""); code != 200 || hostnameOf(body) != prodOrders.Name {
		t.Fatalf("prod orders → http://orders/ = %d %s; want prod's orders (%s)", code, body, prodOrders.Name)
	}
	// A function at zero wakes for a call from a container, like any.
	if code, body := call("dev", "client", "http://hello/", ""); code != 200 || !strings.HasPrefix(hostnameOf(body), "hello-") {
		t.Fatalf("dev client → http://hello/ (a function at zero) = %d %s", code, body)
	}

	// A port of the test's own on every host address: the host answers it
	// (so only a rule can keep the dev container away), and the API port.
	hostLn, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nhost")
			c.Close()
		}
	}()
	hostPort := hostLn.Addr().(*net.TCPAddr).Port
	if c, err := net.DialTimeout("tcp4", net.JoinHostPort(devGW, fmt.Sprint(hostPort)), 2*time.Second); err != nil {
		t.Fatalf("the host cannot reach its own port on dev's bridge: %v", err)
	} else {
		c.Close()
	}
	apiPort := apiPortOf(t, s)

	sealed := []struct{ what, url, host string }{
		{"prod's orders container", fmt.Sprintf("http://%s/", net.JoinHostPort(prodOrders.IP, fmt.Sprint(prodOrders.Port))), ""},
		{"prod's gateway address", "http://" + prodGW + "/", "orders"},
		{"prod's DNS address (TCP)", "http://" + prodGW + ":53/", ""},
		{"the API port on dev's bridge", fmt.Sprintf("http://%s:%s/api/v1/environments", devGW, apiPort), ""},
		{"a host port on dev's bridge", fmt.Sprintf("http://%s:%d/", devGW, hostPort), ""},
		{"a host port on prod's bridge", fmt.Sprintf("http://%s:%d/", prodGW, hostPort), ""},
	}
	for _, c := range sealed {
		code, body := call("dev", "client", c.url, c.host)
		// Dropped, not refused: nothing answers at all.
		if code != 502 || !strings.Contains(body, "deadline exceeded") && !strings.Contains(body, "timeout") {
			t.Errorf("dev client → %s (%s) = %d %s; want 502 with a timeout", c.what, c.url, code, body)
		}
	}
	// prod's names are not dev's to resolve.
	if code, body := call("dev", "client", "http://orders.prod.berth.localhost/", ""); code != 502 || !strings.Contains(body, "no such host") {
		t.Errorf("dev client → orders.prod.berth.localhost before allowFrom = %d %s; want 502 no such host", code, body)
	}

	// prod lets dev in: exactly dev → prod opens.
	s.mustBerth("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: prod}\nspec: {allowFrom: [dev]}\n", "apply", "-f", "-")
	testutil.WaitForState(t, 20*time.Second, "dev → orders.prod.berth.localhost", func() (bool, string) {
		code, body := call("dev", "client", "http://orders.prod.berth.localhost/", "")
		return code == 200 && hostnameOf(body) == prodOrders.Name, fmt.Sprint(code, " ", body)
	})
	if code, body := call("dev", "client", "http://orders/", ""); code != 200 || hostnameOf(body) != devOrders.Name {
		t.Errorf("dev client → http://orders/ after allowFrom = %d %s; want dev's orders still", code, body)
	}
	if code, body := call("dev", "client", "http://"+net.JoinHostPort(prodOrders.IP, fmt.Sprint(prodOrders.Port))+"/", ""); code != 502 {
		t.Errorf("dev client → prod's container directly after allowFrom = %d %s; want it still dropped", code, body)
	}
	if code, body := call("prod", "orders", "http://orders.dev.berth.localhost/", ""); code != 502 || !strings.Contains(body, "no such host") {
		t.Errorf("prod orders → orders.dev.berth.localhost = %d %s; want 502 no such host (dev does not allow prod)", code, body)
	}
	if code, body := call("prod", "orders", "http://"+prodGW+"/", "orders.dev.berth.localhost"); code != 403 ||
		!strings.Contains(body, "environment prod may not call environment dev") {
		t.Errorf("prod orders → gateway with Host orders.dev.berth.localhost = %d %s; want 403", code, body)
	}
}

func gatewayOf(t *testing.T, e *v1.Environment) string {
	t.Helper()
	_, subnet, err := net.ParseCIDR(e.Status.Subnet)
	if err != nil {
		t.Fatalf("environment %s: subnet %q: %v", e.Metadata.Name, e.Status.Subnet, err)
	}
	ip := subnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String()
}

func apiPortOf(t *testing.T, s *server) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dataDir, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cc struct{ Addr string }
	json.Unmarshal(b, &cc)
	u, err := url.Parse(cc.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// removeHostChain takes the test server's INPUT chain away, as the harness
// does its bridges (a real server's stay, as they should). It harms nothing
// while the server still runs: its bridges are going too.
func removeHostChain(s *server) { testutil.RemoveHostNetwork(s.bridges) }
