package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// start compiles the bridge and the aws-lambda-go handler of
// ../testdata/golambda and runs them as an instance would.
func start(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	dir := t.TempDir()
	build := func(src, out string) {
		cmd := exec.Command("go", "build", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", src, err, b)
		}
	}
	build(".", filepath.Join(dir, "bridge"))
	build(filepath.Join("..", "testdata", "golambda"), filepath.Join(dir, "handler"))
	return run(t, filepath.Join(dir, "bridge"), []string{filepath.Join(dir, "handler")})
}

// run runs the bridge with the handler's command line, as an instance
// would, and returns its URL once it listens.
func run(t *testing.T, bridge string, handler []string, env ...string) string {
	t.Helper()
	port := launch(t, bridge, handler, env...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+itoa(port))
		if err == nil {
			c.Close()
			return "http://127.0.0.1:" + itoa(port)
		}
		if time.Now().After(deadline) {
			t.Fatal("the bridge never listened")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launch starts the bridge with the handler's command line on a free
// port, killed at the test's end.
func launch(t *testing.T, bridge string, handler []string, env ...string) int {
	t.Helper()
	// A port free on every address, as the bridge listens on all.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bridge, handler...)
	cmd.Env = append(append(os.Environ(), "PORT="+itoa(port), "BERTH_NAME=hello", "BERTH_ENVIRONMENT=dev", "AWS_LAMBDA_FUNCTION_TIMEOUT=5"), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return port
}

// The instance takes no request before its handler is initialised (its
// first request for an invocation): a readiness check that passed would
// route requests to a runtime still loading, and a frozen standby would
// hold an uninitialised one.
func TestNoRequestsBeforeTheHandlerIsInitialised(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bridge"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	// A handler still in its init: it never asks for an invocation.
	port := launch(t, filepath.Join(dir, "bridge"), []string{"sleep", "30"})
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+itoa(port)); err == nil {
			c.Close()
			t.Fatal("the bridge listens while its handler has not finished its init")
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAnHTTPRequestIsAnAPIGatewayEvent(t *testing.T) {
	url := start(t)
	req, _ := http.NewRequest(http.MethodPost, url+"/orders/7?full=1", strings.NewReader("hi"))
	req.Host = "hello.dev.berth.localhost"
	resp, body := do(t, req)
	want := `POST /orders/7?full=1 body="hi" name=hello deadline=true arn=arn:aws:lambda:us-east-1:dev:function:hello`
	if resp.StatusCode != 201 || body != want || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("answer = %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestAPlatformCallPassesTheEvent(t *testing.T) {
	url := start(t)
	req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`{"n": 1}`))
	req.Header.Set("Lambda-Runtime-Aws-Request-Id", "req-1")
	resp, body := do(t, req)
	if resp.StatusCode != 200 || body != `{"echo":{"n":1},"requestId":"req-1"}` {
		t.Fatalf("answer = %d %s", resp.StatusCode, body)
	}
	// An error the handler returns: a 500 naming it, which the Lambda
	// API, the workflow engine and async retries all read.
	req, _ = http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`{"fail": "card declined"}`))
	req.Header.Set("X-Berth-Invocation-Id", "inv-1")
	resp, body = do(t, req)
	var e struct{ ErrorType, ErrorMessage string }
	json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 500 || e.ErrorMessage != "card declined" || e.ErrorType == "" || resp.Header.Get("X-Amz-Function-Error") == "" {
		t.Fatalf("a failing handler = %d %s", resp.StatusCode, body)
	}
	// One after another on the same instance, as Lambda.
	for i := range 3 {
		req, _ = http.NewRequest(http.MethodPost, url+"/", strings.NewReader(itoa(i)))
		req.Header.Set("X-Berth-Execution-Id", "x")
		if resp, body := do(t, req); resp.StatusCode != 200 || !strings.HasPrefix(body, `{"echo":`+itoa(i)) {
			t.Fatalf("call %d = %d %s", i, resp.StatusCode, body)
		}
	}
}

func TestAHandlerThatExitsFailsItsInvocation(t *testing.T) {
	url := start(t)
	req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`{"exit": true}`))
	req.Header.Set("X-Berth-Invocation-Id", "inv-2")
	resp, body := do(t, req)
	if resp.StatusCode != 502 || !strings.Contains(body, "Runtime.ExitError") {
		t.Fatalf("a crash = %d %s", resp.StatusCode, body)
	}
}
