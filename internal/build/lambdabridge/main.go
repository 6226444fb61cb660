// Command lambdabridge serves the Lambda Runtime API to a handler process
// inside a Berth instance, and turns the HTTP requests the instance gets
// on $PORT into its invocations: `berth build --runtime go-lambda` puts it
// in the image as the entrypoint, with the handler as its argument
// (node-lambda: node and Berth's runtime loop, which loads $_HANDLER). It is
// standard library only: the builder compiles it from its embedded source.
//
// One invocation at a time, as Lambda runs an instance. A request that
// Berth's platform makes (an SDK Invoke through the Lambda API, an async
// delivery, a workflow task: they carry Lambda-Runtime-Aws-Request-Id,
// X-Berth-Invocation-Id or X-Berth-Execution-Id) passes its body as the
// event and gets the handler's result as its body, or a 500 with
// {"errorType", "errorMessage"} when the handler fails. Any other request
// is an HTTP request through the gateway: it becomes an API Gateway HTTP
// API (payload 2.0) event, and the handler's proxy response the answer.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

const maxPayload = 6 << 20

type result struct {
	body    []byte
	errType string // set when the handler reported an error
	crashed bool
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	trace    string
	done     chan result
}

type bridge struct {
	arn     string
	timeout time.Duration
	next    chan *invocation

	mu       sync.Mutex
	inflight map[string]*invocation
	one      sync.Mutex // one invocation at a time
	exited   chan struct{}
	initErr  []byte
	// initFailed is closed with initErr set: an invocation waiting for
	// the handler gets the init error rather than waiting forever.
	initFailed chan struct{}
	// initialised is closed at the handler's first request for an
	// invocation: its init (imports, clients, the user's set-up) is done.
	initialised chan struct{}
	initOnce    sync.Once
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lambdabridge HANDLER [ARGS...]")
		os.Exit(2)
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	timeout := 30 * time.Second
	if s, err := strconv.Atoi(os.Getenv("AWS_LAMBDA_FUNCTION_TIMEOUT")); err == nil && s > 0 {
		timeout = time.Duration(s) * time.Second
	}
	name := os.Getenv("BERTH_NAME")
	env := os.Getenv("BERTH_ENVIRONMENT")
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "us-east-1"
	}
	b := &bridge{
		arn:        "arn:aws:lambda:" + region + ":" + env + ":function:" + name,
		timeout:    timeout,
		next:       make(chan *invocation),
		inflight:   map[string]*invocation{},
		exited:     make(chan struct{}),
		initFailed: make(chan struct{}),

		initialised: make(chan struct{}),
	}
	rapi, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambdabridge:", err)
		os.Exit(1)
	}
	go http.Serve(rapi, b.runtimeAPI())

	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	// The handler goes with the bridge, however the bridge ends (a runtime
	// loop that failed its init waits for nothing else).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+rapi.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME="+name,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="+os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
		"AWS_LAMBDA_LOG_GROUP_NAME=/berth/"+env+"/"+name,
	)
	// A node-lambda image names its handler (index.handler) for the
	// runtime loop; a Go handler is its program.
	if os.Getenv("_HANDLER") == "" {
		cmd.Env = append(cmd.Env, "_HANDLER="+os.Args[1])
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "lambdabridge: start the handler:", err)
		os.Exit(1)
	}
	code := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		close(b.exited)
		var ee *exec.ExitError
		switch {
		case err == nil:
			code <- 0
		case errors.As(err, &ee) && ee.ExitCode() >= 0:
			code <- ee.ExitCode()
		default:
			code <- 1
		}
	}()

	// The instance takes requests once the handler is initialised, as
	// Lambda invokes only after init: a readiness check then finds it
	// ready, and a standby prepared and frozen ahead holds an initialised
	// runtime. A failed init listens too, so requests get its error.
	select {
	case <-b.initialised:
	case <-b.initFailed:
	case <-b.exited:
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lambdabridge:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(b.serveHTTP)}
	go srv.Serve(ln)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case c := <-code:
		// The handler is gone: so is the instance (the platform replaces it).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(ctx)
		cancel()
		os.Exit(c)
	case s := <-sig:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srv.Shutdown(ctx)
		cancel()
		cmd.Process.Signal(s)
		os.Exit(<-code)
	}
}

// runtimeAPI is the Lambda Runtime API (2018-06-01) for the handler.
func (b *bridge) runtimeAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", func(w http.ResponseWriter, r *http.Request) {
		b.initOnce.Do(func() { close(b.initialised) })
		var inv *invocation
		select {
		case inv = <-b.next:
		case <-r.Context().Done():
			return
		}
		h := w.Header()
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", b.arn)
		if inv.trace != "" {
			h.Set("Lambda-Runtime-Trace-Id", inv.trace)
		}
		h.Set("Content-Type", "application/json")
		w.Write(inv.payload)
	})
	finish := func(w http.ResponseWriter, r *http.Request, res result) {
		b.mu.Lock()
		inv := b.inflight[r.PathValue("id")]
		delete(b.inflight, r.PathValue("id"))
		b.mu.Unlock()
		if inv == nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"errorMessage":"unknown or finished request id","errorType":"InvalidRequestID"}`)
			return
		}
		inv.done <- res
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"OK"}`)
	}
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
		if err != nil {
			return
		}
		if len(body) > maxPayload {
			finish(w, r, result{errType: "Function.ResponseSizeTooLarge",
				body: errorBody("Function.ResponseSizeTooLarge", fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", maxPayload))})
			return
		}
		finish(w, r, result{body: body})
	})
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxPayload))
		typ := r.Header.Get("Lambda-Runtime-Function-Error-Type")
		finish(w, r, result{errType: orDefault(typ, "Unhandled"), body: normalizeError(body, typ)})
	})
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxPayload))
		fmt.Fprintf(os.Stderr, "lambdabridge: the handler failed to start: %s\n", body)
		b.mu.Lock()
		if b.initErr == nil {
			b.initErr = normalizeError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))
			close(b.initFailed)
		}
		b.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"OK"}`)
	})
	return mux
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// normalizeError makes sure an error body names errorType and errorMessage.
func normalizeError(body []byte, typ string) []byte {
	var e struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &e) == nil && (e.ErrorType != "" || e.ErrorMessage != "") {
		return body
	}
	return errorBody(orDefault(typ, "Unhandled"), strings.TrimSpace(string(body)))
}

func errorBody(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	return b
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// traceID turns a W3C traceparent into X-Ray's header form, so tracing
// libraries written for Lambda keep the request's trace.
func traceID(traceparent string) string {
	p := strings.Split(traceparent, "-")
	if len(p) != 4 || len(p[1]) != 32 || len(p[2]) != 16 {
		return ""
	}
	sampled := "0"
	if p[3] == "01" {
		sampled = "1"
	}
	return "Root=1-" + p[1][:8] + "-" + p[1][8:] + ";Parent=" + p[2] + ";Sampled=" + sampled
}

// platformCall says whether r is one of Berth's own deliveries, whose
// body is the event itself.
func platformCall(r *http.Request) bool {
	return r.Header.Get("Lambda-Runtime-Aws-Request-Id") != "" || r.Header.Get("X-Berth-Invocation-Id") != "" ||
		r.Header.Get("X-Berth-Execution-Id") != ""
}

func (b *bridge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		return
	}
	if len(body) > maxPayload {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	id := r.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if id == "" {
		id = newID()
	}
	platform := platformCall(r)
	payload := body
	if !platform {
		payload = apiGatewayEvent(r, body, id)
	}
	b.one.Lock()
	defer b.one.Unlock()
	b.mu.Lock()
	initErr := b.initErr
	b.mu.Unlock()
	if initErr != nil {
		writeJSON(w, http.StatusBadGateway, initErr)
		return
	}
	inv := &invocation{id: id, payload: payload, deadline: time.Now().Add(b.timeout),
		trace: traceID(r.Header.Get("Traceparent")), done: make(chan result, 1)}
	b.mu.Lock()
	b.inflight[id] = inv
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.inflight, id)
		b.mu.Unlock()
	}()
	select {
	case b.next <- inv:
	case <-b.initFailed:
		writeJSON(w, http.StatusBadGateway, b.initErr)
		return
	case <-b.exited:
		writeJSON(w, http.StatusBadGateway, errorBody("Runtime.ExitError", "the handler process exited"))
		return
	case <-r.Context().Done():
		return
	}
	var res result
	select {
	case res = <-inv.done:
	case <-b.exited:
		writeJSON(w, http.StatusBadGateway, errorBody("Runtime.ExitError", "the handler process exited during the invocation"))
		return
	case <-r.Context().Done():
		// The caller gave up (its timeout): the handler's answer, if it
		// comes, is dropped.
		return
	}
	w.Header().Set("Lambda-Runtime-Aws-Request-Id", id)
	if res.errType != "" {
		w.Header().Set("X-Amz-Function-Error", res.errType)
		writeJSON(w, http.StatusInternalServerError, res.body)
		return
	}
	if platform {
		writeJSON(w, http.StatusOK, res.body)
		return
	}
	writeProxyResponse(w, res.body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// apiGatewayEvent is r as API Gateway's HTTP API (payload 2.0) sends it.
func apiGatewayEvent(r *http.Request, body []byte, id string) []byte {
	headers := map[string]string{}
	var cookies []string
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "cookie" {
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
			}
			continue
		}
		headers[lk] = strings.Join(vs, ",")
	}
	headers["host"] = r.Host
	query := map[string]string{}
	for k, vs := range r.URL.Query() {
		query[k] = strings.Join(vs, ",")
	}
	now := time.Now()
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		ip = strings.TrimSpace(strings.Split(xff, ",")[0])
	}
	domain := r.Host
	if h, _, err := net.SplitHostPort(domain); err == nil {
		domain = h
	}
	prefix, _, _ := strings.Cut(domain, ".")
	ev := map[string]any{
		"version":        "2.0",
		"routeKey":       "$default",
		"rawPath":        r.URL.EscapedPath(),
		"rawQueryString": r.URL.RawQuery,
		"headers":        headers,
		"requestContext": map[string]any{
			"accountId":    os.Getenv("BERTH_ENVIRONMENT"),
			"apiId":        "berth",
			"domainName":   domain,
			"domainPrefix": prefix,
			"http": map[string]string{
				"method": r.Method, "path": r.URL.Path, "protocol": r.Proto,
				"sourceIp": ip, "userAgent": r.UserAgent(),
			},
			"requestId": id,
			"routeKey":  "$default",
			"stage":     "$default",
			"time":      now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			"timeEpoch": now.UnixMilli(),
		},
		"isBase64Encoded": false,
	}
	if len(cookies) > 0 {
		ev["cookies"] = cookies
	}
	if len(query) > 0 {
		ev["queryStringParameters"] = query
	}
	if len(body) > 0 {
		if utf8.Valid(body) {
			ev["body"] = string(body)
		} else {
			ev["body"] = base64.StdEncoding.EncodeToString(body)
			ev["isBase64Encoded"] = true
		}
	}
	out, _ := json.Marshal(ev)
	return out
}

// writeProxyResponse answers with a handler's API Gateway v2 response:
// an object with statusCode is a proxy response; anything else is the
// body of a 200 in JSON, as API Gateway does.
func writeProxyResponse(w http.ResponseWriter, out []byte) {
	var resp struct {
		StatusCode        int                 `json:"statusCode"`
		Headers           map[string]string   `json:"headers"`
		MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
		Cookies           []string            `json:"cookies"`
		Body              string              `json:"body"`
		IsBase64Encoded   bool                `json:"isBase64Encoded"`
	}
	if !bytes.HasPrefix(bytes.TrimSpace(out), []byte("{")) || json.Unmarshal(out, &resp) != nil || resp.StatusCode == 0 {
		writeJSON(w, http.StatusOK, out)
		return
	}
	h := w.Header()
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	for _, c := range resp.Cookies {
		h.Add("Set-Cookie", c)
	}
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(resp.Body); err == nil {
			body = b
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}
