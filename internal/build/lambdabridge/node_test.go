package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startNode runs the bridge with node on Berth's runtime loop
// (../nodelambda/runtime.js) and the handler of ../testdata/nodelambda,
// as a node-lambda image does.
func startNode(t *testing.T, handler string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bridge"), ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	loop, _ := filepath.Abs(filepath.Join("..", "nodelambda", "runtime.js"))
	root, _ := filepath.Abs(filepath.Join("..", "testdata", "nodelambda"))
	return run(t, filepath.Join(dir, "bridge"), []string{node, loop}, "_HANDLER="+handler, "LAMBDA_TASK_ROOT="+root)
}

func TestNodeHandlerThroughTheGateway(t *testing.T) {
	url := startNode(t, "index.handler")
	req, _ := http.NewRequest(http.MethodPost, url+"/orders/7?full=1", strings.NewReader("hi"))
	req.Host = "hello.dev.berth.localhost"
	resp, body := do(t, req)
	want := `POST /orders/7?full=1 body="hi" name=hello deadline=true arn=arn:aws:lambda:us-east-1:dev:function:hello`
	if resp.StatusCode != 201 || body != want || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("answer = %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestNodeHandlerPlatformCalls(t *testing.T) {
	url := startNode(t, "index.handler")
	call := func(body string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(body))
		req.Header.Set("Lambda-Runtime-Aws-Request-Id", "req-"+body)
		return do(t, req)
	}
	if resp, body := call(`{"n": 1}`); resp.StatusCode != 200 || body != `{"echo":{"n":1},"requestId":"req-{\"n\": 1}"}` {
		t.Fatalf("echo = %d %s", resp.StatusCode, body)
	}
	// A thrown error: Lambda's shape, named by the handler's error.
	resp, body := call(`{"fail": "card declined"}`)
	var e struct {
		ErrorType, ErrorMessage string
		Trace                   []string
	}
	json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 500 || e.ErrorType != "Error" || e.ErrorMessage != "card declined" || len(e.Trace) == 0 ||
		resp.Header.Get("X-Amz-Function-Error") != "Unhandled" {
		t.Fatalf("a failing handler = %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// An event that is not JSON fails its invocation, not the loop.
	if resp, body := call(`{nope`); resp.StatusCode != 500 || !strings.Contains(body, "Runtime.InvalidEventPayload") {
		t.Fatalf("a bad event = %d %s", resp.StatusCode, body)
	}
	for i := range 3 {
		if resp, body := call(itoa(i)); resp.StatusCode != 200 || !strings.HasPrefix(body, `{"echo":`+itoa(i)) {
			t.Fatalf("call %d = %d %s", i, resp.StatusCode, body)
		}
	}
	// process.exit: the invocation fails, as the instance goes.
	if resp, body := call(`{"exit": true}`); resp.StatusCode != 502 || !strings.Contains(body, "Runtime.ExitError") {
		t.Fatalf("an exit = %d %s", resp.StatusCode, body)
	}
}

func TestNodeCallbackHandler(t *testing.T) {
	url := startNode(t, "index.callback")
	req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`{}`))
	req.Header.Set("X-Berth-Invocation-Id", "inv-1")
	if resp, body := do(t, req); resp.StatusCode != 200 || body != `{"called":"hello","remaining":true}` {
		t.Fatalf("callback = %d %s", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`{"fail": "no"}`))
	req.Header.Set("X-Berth-Invocation-Id", "inv-2")
	if resp, body := do(t, req); resp.StatusCode != 500 || !strings.Contains(body, `"errorMessage":"no"`) {
		t.Fatalf("callback error = %d %s", resp.StatusCode, body)
	}
}

// A handler that is not there: every invocation gets the init error, in
// Lambda's shape, rather than an instance restarting forever.
func TestNodeInitError(t *testing.T) {
	url := startNode(t, "index.missing")
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`{}`))
		req.Header.Set("X-Berth-Invocation-Id", "inv")
		resp, body := do(t, req)
		if resp.StatusCode != 502 || !strings.Contains(body, `"errorType":"Runtime.HandlerNotFound"`) || !strings.Contains(body, "index.missing") {
			t.Fatalf("init error = %d %s", resp.StatusCode, body)
		}
	}
}

func TestNodeESModuleHandler(t *testing.T) {
	url := startNode(t, "esm.handler")
	req, _ := http.NewRequest(http.MethodPost, url+"/", strings.NewReader(`[1,2]`))
	req.Header.Set("X-Berth-Invocation-Id", "inv-1")
	if resp, body := do(t, req); resp.StatusCode != 200 || body != `{"esm":[1,2],"fn":"hello"}` {
		t.Fatalf("ES module = %d %s", resp.StatusCode, body)
	}
}
