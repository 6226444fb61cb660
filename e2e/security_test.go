package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

// The attacks of issue 11, each by a deployer whose token is scoped to one
// environment, against a real server with real containers.

const vaultSecret = "b-secret-7f3a91"

// TestOutgoingCallsKeepTheEnvironmentsSeal: a deployer of environment a
// cannot use the platform's own outgoing calls (workflow http tasks, async
// callbacks) to reach environment b's container, b's route on the host's
// gateway, the API or link-local metadata, while a's own instances and
// services stay reachable, the services by name through a's gateway.
// Deleting a then takes the deployer's token with it.
func TestOutgoingCallsKeepTheEnvironmentsSeal(t *testing.T) {
	s := startServer(t)
	t.Cleanup(func() { removeHostChain(s) })
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Environment
metadata: {name: a}
---
apiVersion: berth.dev/v1
kind: Environment
metadata: {name: b}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: vault, environment: b}
spec:
  image: %[1]s
  env: [{name: SECRET, value: %[2]s}]
  route: {path: /vault, stripPrefix: true}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: web, environment: a}
spec: {image: %[1]s}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: job, environment: a}
spec: {image: %[1]s, scale: {max: 1, idleTimeout: 60s}, timeout: 30s}
`, echoV1, vaultSecret), "apply", "-f", "-", "--wait", "--timeout", "2m")
	tok := strings.TrimSpace(s.mustBerth("", "token", "create", "--env", "a", "--role", "deployer", "--name", "deployer-a"))
	asA := func(stdin string, args ...string) (string, string, int) {
		return s.berth(stdin, append([]string{"--token", tok}, args...)...)
	}
	vault := s.service("b", "vault").Status.Instances[0]
	web := s.service("a", "web").Status.Instances[0]
	vaultURL := "http://" + net.JoinHostPort(vault.IP, fmt.Sprint(vault.Port))
	webURL := "http://" + net.JoinHostPort(web.IP, fmt.Sprint(web.Port))
	apiAddr := strings.TrimPrefix(s.client.Addr(), "http://")
	if code, body, err := s.gatewayGet("x", "/vault/env"); err != nil || code != 200 || !strings.Contains(body, vaultSecret) {
		t.Fatalf("b's vault through its route = %d %q %v (test cannot tell the seal works)", code, body, err)
	}

	t.Run("workflow http tasks", func(t *testing.T) {
		task := func(name, resource string) string {
			return fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Workflow
metadata: {name: %s, environment: a}
spec:
  definition:
    StartAt: T
    States:
      T: {Type: Task, Resource: %q, TimeoutSeconds: 10, End: true}
`, name, resource)
		}
		sealed := map[string]string{
			"b-container": vaultURL + "/env",
			"b-route":     "http://" + s.gateway + "/vault/env",
			"api":         "http://" + apiAddr + "/api/v1/environments/b/services",
			"metadata":    "http://169.254.169.254/latest/meta-data/",
		}
		open := map[string]string{
			"own-instance": webURL + "/",
			"own-service":  "http://web/",
		}
		var docs []string
		for name, res := range sealed {
			docs = append(docs, task(name, res))
		}
		for name, res := range open {
			docs = append(docs, task(name, res))
		}
		if out, errOut, code := asA(strings.Join(docs, "---\n"), "apply", "-f", "-"); code != 0 {
			t.Fatalf("deployer of a applying workflows: exit %d\n%s%s", code, out, errOut)
		}
		for name, res := range sealed {
			out, errOut, code := asA("", "workflow", "start", name, "-e", "a", "--input", "{}", "--wait", "--timeout", "1m")
			if code == 0 || strings.Contains(out+errOut, vaultSecret) || !strings.Contains(errOut, "egress") {
				t.Errorf("task to %s (%s): exit %d\nstdout: %s\nstderr: %s\nwant it failed by the egress policy", name, res, code, out, errOut)
			}
		}
		for name, res := range open {
			out, errOut, code := asA("", "workflow", "start", name, "-e", "a", "--input", "{}", "--wait", "--timeout", "1m")
			if code != 0 || !strings.Contains(out, web.Name) {
				t.Errorf("task to %s (%s): exit %d\nstdout: %s\nstderr: %s\nwant a's web to answer", name, res, code, out, errOut)
			}
		}
	})

	t.Run("async callbacks", func(t *testing.T) {
		for _, cb := range []string{
			vaultURL + "/file?path=/tmp/pwned",
			"http://" + s.gateway + "/vault/file?path=/tmp/pwned",
			"http://" + apiAddr + "/api/v1/environments/b/services",
		} {
			_, errOut, code := asA("", "invoke", "job", "-e", "a", "-d", "x", "--async", "--callback-url", cb)
			if code == 0 || !strings.Contains(errOut, "egress") {
				t.Errorf("callback to %s: exit %d %s; want it refused by the egress policy", cb, code, errOut)
			}
		}
		if code, body, _ := s.gatewayGet("x", "/vault/file?path=/tmp/pwned"); code != 404 {
			t.Errorf("b's vault got a callback: %d %s", code, body)
		}
		// a's own service by name: through a's gateway, into web's
		// container, where the test reads it back.
		out, errOut, code := asA("", "invoke", "job", "-e", "a", "-d", "x", "--async", "--callback-url", "http://web/file?path=/tmp/cb")
		if code != 0 {
			t.Fatalf("callback to a's own service: exit %d %s", code, errOut)
		}
		id := lastField(out)
		testutil.WaitForState(t, 60*time.Second, "the callback in a's web", func() (bool, string) {
			code, body, err := s.gatewayGet("web.a.berth.localhost", "/file?path=/tmp/cb")
			return code == 200 && strings.Contains(body, id), fmt.Sprint(code, " ", body, " ", err)
		})
	})

	t.Run("deleting the environment takes its tokens", func(t *testing.T) {
		if _, errOut, code := asA("", "get", "services", "-e", "a"); code != 0 {
			t.Fatalf("deployer token before the delete: exit %d %s", code, errOut)
		}
		s.mustBerth("", "env", "delete", "a", "--cascade")
		s.mustBerth("apiVersion: berth.dev/v1\nkind: Environment\nmetadata: {name: a}\n", "apply", "-f", "-")
		if _, errOut, code := asA("", "get", "services", "-e", "a"); code != 4 {
			t.Errorf("the old token on the new environment a: exit %d %s; want 4 (refused)", code, errOut)
		}
		if out := s.mustBerth("", "token", "ls"); strings.Contains(out, "deployer-a") {
			t.Errorf("token ls after the delete:\n%s", out)
		}
	})
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// TestSlowClientsAreBounded: 1,000 slow-body connections to the gateway
// and 300 unauthenticated ones to the API, all from one address
// (127.0.0.1), hold at most their per-client share of the server's
// descriptors, never keep another client (127.0.0.2) from being served,
// and are all released by the server itself once their bodies fall
// behind the minimum rate.
func TestSlowClientsAreBounded(t *testing.T) {
	s := startServer(t)
	t.Cleanup(func() { removeHostChain(s) })
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: echo}\nspec: {image: %s}\n", echoV1),
		"apply", "-f", "-", "--wait", "--timeout", "2m")
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	served := func() error {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.gateway+"/", nil)
		req.Host = "echo.default.berth.localhost"
		res, err := other.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return fmt.Errorf("gateway answered %d", res.StatusCode)
		}
		res, err = other.Get(s.client.Addr() + "/api/v1/environments")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("API answered %d; want 401", res.StatusCode)
		}
		return nil
	}
	if err := served(); err != nil {
		t.Fatal(err)
	}
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	base := fds()

	// Headers at once, then a body of 50,000 bytes one byte every two
	// seconds: the shape of the attack in the issue.
	apiHost := strings.TrimPrefix(s.client.Addr(), "http://")
	var conns []net.Conn
	open := func(addr, head string, n int) {
		for range n {
			c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("connection %d to %s: %v", len(conns), addr, err)
			}
			conns = append(conns, c)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte(head + "x"))
		}
	}
	open(s.gateway, "POST /file?path=/tmp/slow HTTP/1.1\r\nHost: echo.default.berth.localhost\r\nContent-Length: 50000\r\n\r\n", 1000)
	open(apiHost, "POST /api/v1/environments/default/functions/f/invoke HTTP/1.1\r\nHost: api\r\nContent-Length: 50000\r\n\r\n", 300)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	stop := make(chan struct{})
	var trickling sync.WaitGroup
	trickling.Add(1)
	go func() {
		defer trickling.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
			for _, c := range conns {
				c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
				c.Write([]byte("x"))
			}
		}
	}()
	defer func() { close(stop); trickling.Wait() }()

	held := fds() - base
	t.Logf("descriptors: %d before, +%d with 1,300 slow connections open", base, held)
	if err := served(); err != nil {
		t.Errorf("another client during the attack: %v", err)
	}
	// 512 per client on the gateway, 128 on the API, plus the server's
	// own churn.
	if limit := 512 + 128 + 64; held > limit {
		t.Errorf("the server holds %d more descriptors with the slow connections; want at most %d", held, limit)
	}
	if held < 100 {
		t.Errorf("the server holds only %d more descriptors: the slow connections were not even accepted", held)
	}
	start := time.Now()
	testutil.WaitForState(t, 90*time.Second, "the server to let the slow connections go", func() (bool, string) {
		n := fds()
		return n <= base+16, fmt.Sprintf("%d descriptors, %d before", n, base)
	})
	t.Logf("released %s after the attack began", time.Since(start).Round(time.Second))
	if err := served(); err != nil {
		t.Errorf("another client after the attack: %v", err)
	}
}

// TestOverLimitChunkedBodyIsRefused: an 11 MB chunked body to a service
// gets 413 and the service never sees any of it (it used to write the first
// 10 MiB to the file it was asked to); a chunked body under the limit
// arrives whole.
func TestOverLimitChunkedBodyIsRefused(t *testing.T) {
	s := startServer(t)
	t.Cleanup(func() { removeHostChain(s) })
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth(fmt.Sprintf("apiVersion: berth.dev/v1\nkind: Service\nmetadata: {name: echo}\nspec: {image: %s}\n", echoV1),
		"apply", "-f", "-", "--wait", "--timeout", "2m")
	post := func(path string, n int) (int, string) {
		// A reader without a length: the client sends it chunked.
		body := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), n)))
		req, _ := http.NewRequest(http.MethodPost, "http://"+s.gateway+path, body)
		req.Host = "echo.default.berth.localhost"
		req.ContentLength = -1
		res, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(bufio.NewReader(res.Body))
		return res.StatusCode, string(b)
	}
	if code, body := post("/file?path=/tmp/big", 11_000_000); code != http.StatusRequestEntityTooLarge {
		t.Errorf("11 MB chunked: %d %s; want 413", code, body)
	}
	if code, body, _ := s.gatewayGet("echo.default.berth.localhost", "/file?path=/tmp/big"); code != 404 {
		t.Errorf("the service got %d bytes of a refused body (%d)", len(body), code)
	}
	if code, body := post("/file?path=/tmp/small", 1_000_000); code != 200 {
		t.Errorf("1 MB chunked: %d %s; want 200", code, body)
	}
	q := url.Values{"path": {"/tmp/small"}}
	if code, body, _ := s.gatewayGet("echo.default.berth.localhost", "/file?"+q.Encode()); code != 200 || len(body) != 1_000_000 {
		t.Errorf("the service got %d bytes of a 1 MB body (%d)", len(body), code)
	}
}
