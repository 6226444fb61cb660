package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/build"
	"berth.dev/berth/internal/testutil"
	"berth.dev/berth/internal/wasm/wasmtest"
)

// pushWasm packs module as a Wasm OCI artifact named ref and pushes it to
// the server's registry with the CLI, as a user with a module from any
// toolchain would.
func (s *server) pushWasm(t *testing.T, ref string, module []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "module.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := build.WriteWasmArtifact(ref, module, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out := s.mustBerth("", "image", "push", path); !strings.Contains(out, "pushed") {
		t.Fatalf("image push: %s", out)
	}
}

func (s *server) wasmDo(method, host, path, body string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.gateway+path, strings.NewReader(body))
	req.Host = host
	res, err := httpClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(res.Body)
	return res.StatusCode, b.String()
}

// TestWasmFunction: Wasm functions from `berth init --runtime go-wasm` and
// from a pushed module run in the server through the gateway, with the
// same manifests, routes, async invocations, logs and config files as
// container functions; a module that panics, exhausts its memory or loops
// gets a 502/504 that says why, and nothing else is harmed; a container
// image is refused as a module; after a restart the compiled code comes
// from the disk cache.
func TestWasmFunction(t *testing.T) {
	s := startServer(t)
	work := t.TempDir()

	// init + deploy: the whole loop, no container anywhere.
	s.mustBerthIn(work, "init", "--runtime", "go-wasm", "hello-wasm")
	out, errOut, code := s.berthIn(work, "deploy", "hello-wasm", "--wait", "--timeout", "3m")
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s\n%s", code, out, errOut)
	}
	code, body, err := s.gatewayGet("hello-wasm.default.berth.localhost", "/")
	if err != nil || code != 200 || !strings.Contains(body, `"message":"Hello from hello-wasm"`) || !strings.Contains(body, `"runtime":"go-wasm"`) {
		t.Fatalf("hello-wasm: %d %v %s", code, err, body)
	}

	// A module built elsewhere (here: the test's handler), pushed, with
	// a config file, an env var, a route, limits.
	mod, err := wasmtest.BuildGoHandler(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.pushWasm(t, "handler:v1", mod)
	s.mustBerth("", "config", "set", "app", "colour=blue")
	s.mustBerth(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: handler}
spec:
  runtime: wasm
  image: handler:v1
  env: [{name: GREETING, value: ahoy}]
  configFiles: [{config: app, mountPath: /etc/app}]
  resources: {memory: 64Mi}
  timeout: 2s
  route: {path: /h, stripPrefix: true}
`, "apply", "-f", "-", "--wait", "--timeout", "2m")

	const host = "handler.default.berth.localhost"
	if code, body := s.wasmDo("POST", host, "/echo?q=1", "payload"); code != 200 || body != "POST /echo?q=1 payload" {
		t.Fatalf("echo: %d %q", code, body)
	}
	if code, body := s.wasmDo("GET", "anything.example", "/h/env?name=GREETING", ""); code != 200 || body != "ahoy" {
		t.Fatalf("env through the route path: %d %q", code, body)
	}
	if code, body := s.wasmDo("GET", host, "/env?name=BERTH_REVISION", ""); code != 200 || body != "1" {
		t.Fatalf("BERTH_REVISION: %d %q", code, body)
	}
	if code, body := s.wasmDo("GET", host, "/file?path=/etc/app/colour", ""); code != 200 || body != "blue" {
		t.Fatalf("config file: %d %q", code, body)
	}
	if code, body := s.wasmDo("GET", host, "/file?path=/etc/passwd", ""); code != 404 {
		t.Fatalf("the host's /etc/passwd: %d %q, want 404", code, body)
	}
	if code, body := s.wasmDo("GET", host, "/log?msg=from-the-module", ""); code != 200 || body != "logged" {
		t.Fatalf("log: %d %q", code, body)
	}
	testutil.WaitForState(t, 10*time.Second, "the module's stderr in berth logs", func() (bool, string) {
		out, _, _ := s.berth("", "logs", "handler")
		return strings.Contains(out, "log: from-the-module"), out
	})

	t.Run("failures are answered and harm nothing", func(t *testing.T) {
		for _, c := range []struct {
			path   string
			status int
			says   string
		}{
			{"/panic", 502, "handler panicked on purpose"},
			{"/oom", 502, "out of memory"},
			{"/loop", 504, "did not answer within its timeout of 2s"},
		} {
			code, body := s.wasmDo("GET", host, c.path, "")
			if code != c.status || !strings.Contains(body, c.says) {
				t.Errorf("%s: %d %s, want %d saying %q", c.path, code, body, c.status, c.says)
			}
		}
		if code, body, err := s.gatewayGet("hello-wasm.default.berth.localhost", "/"); err != nil || code != 200 {
			t.Fatalf("the other function after the failures: %d %v %s", code, err, body)
		}
		if code, body := s.wasmDo("GET", host, "/fine", ""); code != 200 || body != "hello from wasm fine" {
			t.Fatalf("the same function after the failures: %d %q", code, body)
		}
	})

	t.Run("async invocation", func(t *testing.T) {
		ctx := context.Background()
		id, err := s.client.InvokeAsync(ctx, "default", "handler", []byte(`{"n":1}`), "")
		if err != nil {
			t.Fatal(err)
		}
		testutil.WaitForState(t, 30*time.Second, "the async invocation to succeed", func() (bool, string) {
			inv, err := s.client.Invocation(ctx, "default", id)
			return err == nil && inv.Status == v1.InvocationSucceeded && inv.StatusCode == 200, fmt.Sprintf("%+v %v", inv, err)
		})
	})

	t.Run("a container image is not a module", func(t *testing.T) {
		s.mustBerth("", "image", "import", imageV1)
		s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Function
metadata: {name: notwasm}
spec: {runtime: wasm, image: %s}
`, echoV1), "apply", "-f", "-")
		testutil.WaitForState(t, 60*time.Second, "the function to say its image is no module", func() (bool, string) {
			fn := s.function("default", "notwasm")
			for _, c := range fn.Status.Conditions {
				if c.Type == v1.ConditionProgressing && c.Reason == "InvalidModule" && strings.Contains(c.Message, "not a Wasm module") {
					return true, ""
				}
			}
			b, _ := json.Marshal(fn.Status.Conditions)
			return false, string(b)
		})
	})

	t.Run("outgoing calls keep the environment's seal", func(t *testing.T) {
		t.Cleanup(func() { removeHostChain(s) })
		s.mustBerth("", "image", "import", imageV1)
		mod, err := wasmtest.BuildGoOutcall(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		s.pushWasm(t, "outcall:v1", mod)
		s.mustBerth(fmt.Sprintf(`apiVersion: berth.dev/v1
kind: Environment
metadata: {name: other}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: echo}
spec: {image: %[1]s}
---
apiVersion: berth.dev/v1
kind: Service
metadata: {name: echo, environment: other}
spec: {image: %[1]s}
---
apiVersion: berth.dev/v1
kind: Function
metadata: {name: outcall}
spec: {runtime: wasm, image: "outcall:v1", timeout: 10s}
`, echoV1), "apply", "-f", "-", "--wait", "--timeout", "2m")
		mine := s.service("default", "echo").Status.Instances[0]
		theirs := s.service("other", "echo").Status.Instances[0]
		var defEnv v1.Environment
		if err := s.client.Get(context.Background(), v1.KindEnvironment, "", "default", &defEnv); err != nil {
			t.Fatal(err)
		}
		// A server of the test's own on every host address: reachable from
		// the host, so only the policy keeps the module away from it.
		var hits atomic.Int64
		hostSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			fmt.Fprint(w, "the host")
		})}
		hostLn, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		go hostSrv.Serve(hostLn)
		defer hostSrv.Close()
		hostPort := hostLn.Addr().(*net.TCPAddr).Port

		const fn = "outcall.default.berth.localhost"
		get := func(target string) (int, string, http.Header) {
			t.Helper()
			req, _ := http.NewRequest("GET", "http://"+s.gateway+"/get?url="+url.QueryEscape(target), nil)
			req.Host = fn
			res, err := httpClient.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", target, err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b), res.Header
		}

		// The environment's own Service by name, through its gateway.
		for _, u := range []string{"http://echo/", "http://echo.default/", "http://echo.default.berth.localhost/"} {
			code, body, h := get(u)
			if code != 200 || h.Get("X-Upstream-Status") != "200" || !strings.Contains(body, mine.Name) {
				t.Fatalf("%s: %d %v %s; want default's echo (%s)", u, code, h, body, mine.Name)
			}
		}
		// Another environment's name: its gateway refuses (other does not
		// allow default in), as it does a container's call.
		code, body, h := get("http://echo.other/")
		if code != 200 || h.Get("X-Upstream-Status") != "403" || !strings.Contains(body, "may not call environment other") || strings.Contains(body, theirs.Name) {
			t.Fatalf("echo.other: %d %v %s; want the gateway's 403", code, h, body)
		}
		// Another environment's instance, the host on loopback and on the
		// environment's own bridge: refused before any connection.
		for _, c := range []struct{ url, says string }{
			{fmt.Sprintf("http://%s/", net.JoinHostPort(theirs.IP, fmt.Sprint(theirs.Port))), `in environment "other"'s network`},
			{fmt.Sprintf("http://127.0.0.1:%d/", hostPort), "loopback"},
			{fmt.Sprintf("http://%s:%d/", gatewayOf(t, &defEnv), hostPort), "an address of the host itself"},
			{"http://169.254.169.254/latest/meta-data/", "link-local"},
		} {
			code, body, _ := get(c.url)
			if code != 502 || !strings.HasPrefix(body, "call error (refused): ") || !strings.Contains(body, c.says) {
				t.Errorf("%s: %d %s; want refused, saying %q", c.url, code, body, c.says)
			}
		}
		if n := hits.Load(); n != 0 {
			t.Fatalf("the host's server was reached %d times from the module", n)
		}
	})

	t.Run("after a restart the compiled code comes from the disk", func(t *testing.T) {
		cache := filepath.Join(s.dataDir, "wasm-cache")
		entries, err := os.ReadDir(cache)
		if err != nil || len(entries) == 0 {
			t.Fatalf("compilation cache %s: %v entries, %v", cache, len(entries), err)
		}
		// A clean stop (shutdown() would delete the functions first).
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Process.Wait()
		s.start()
		testutil.WaitForState(t, 60*time.Second, "handler answering after the restart", func() (bool, string) {
			code, body := s.wasmDo("GET", host, "/back", "")
			fn := s.function("default", "handler")
			return code == 200 && body == "hello from wasm back", fmt.Sprintf("%d %s; status %+v", code, body, fn.Status)
		})
	})
}
