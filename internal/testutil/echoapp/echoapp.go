// Package echoapp is the workload Berth's tests run: an HTTP server that
// answers on $PORT and can be told to misbehave (fail its liveness probe,
// exit, eat memory, sleep, call another URL) so tests can watch the
// platform react. The echo test image runs it as its process; the mock
// runtime runs it in-process for each mock container, so both behave the
// same.
package echoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Env is the process the app runs as.
type Env struct {
	// Getenv reads the process's environment; Environ is all of it.
	Getenv  func(string) string
	Environ []string
	// Hostname is answered on "/".
	Hostname string
	// Stdout receives what the app prints (the container's log).
	Stdout io.Writer
	// Listen opens the listener on addr (":PORT").
	Listen func(addr string) (net.Listener, error)
	// Terminate delivers SIGTERM: the app stops taking requests and ends
	// once those in flight are done.
	Terminate <-chan struct{}
	// Hog allocates and touches mb MiB (GET /hog).
	Hog func(mb int)
}

// Serve runs the app until it is terminated (exit code 0) or asked to exit
// (GET /exit?code=N); it returns the process's exit code.
func Serve(env Env) int {
	out := env.Stdout
	port := env.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	exit := make(chan int, 1)
	var failing atomic.Bool
	var flakyMu sync.Mutex
	flaky := map[string]int{}
	failPercent, _ := strconv.ParseInt(env.Getenv("FAIL_PERCENT"), 10, 64)
	delayMS, _ := strconv.Atoi(env.Getenv("DELAY_MS"))
	delay := time.Duration(delayMS) * time.Millisecond
	var rootServed atomic.Int64
	mux := http.NewServeMux()
	// /flaky?key=K&fail=N fails (500) the first N calls with key K, then
	// succeeds: a handler for retry tests.
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		fail, _ := strconv.Atoi(r.URL.Query().Get("fail"))
		flakyMu.Lock()
		flaky[key]++
		n := flaky[key]
		flakyMu.Unlock()
		if n <= fail {
			http.Error(w, fmt.Sprintf("failing call %d of %d", n, fail), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "ok after %d calls\n", n)
	})
	// /status?code=N answers with that status.
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code < 100 || code > 599 {
			code = 200
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d\n", code)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Platform deliveries (async, cron, topics) are logged, so tests
		// can see them arrive.
		if id := r.Header.Get("X-Berth-Invocation-Id"); id != "" {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(out, "invocation %s attempt %s path %s body %q\n", id, r.Header.Get("X-Berth-Attempt"), r.URL.Path, body)
			// A body "flaky KEY N" fails the first N deliveries of KEY;
			// "fail" always fails: handlers for retry tests.
			var key string
			var n int
			if _, err := fmt.Sscanf(string(body), "flaky %s %d", &key, &n); err == nil {
				flakyMu.Lock()
				flaky[key]++
				calls := flaky[key]
				flakyMu.Unlock()
				if calls <= n {
					http.Error(w, fmt.Sprintf("failing call %d of %d", calls, n), http.StatusInternalServerError)
					return
				}
			} else if _, err := fmt.Sscanf(string(body), "sleep %d", &n); err == nil {
				// "sleep MS": a slow handler, to catch invocations in flight.
				select {
				case <-time.After(time.Duration(n) * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			} else if string(body) == "fail" {
				http.Error(w, "failing as asked", http.StatusInternalServerError)
				return
			}
		}
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		// FAIL_PERCENT=N fails N of every 100 requests to "/" (500),
		// spread evenly; DELAY_MS=N answers each N ms late: a bad
		// revision for canary tests.
		if failPercent > 0 {
			n := rootServed.Add(1)
			if n*failPercent/100 != (n-1)*failPercent/100 {
				http.Error(w, "failing as configured (FAIL_PERCENT)", http.StatusInternalServerError)
				return
			}
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		writeJSON(w, map[string]string{
			"hostname": env.Hostname,
			"version":  env.Getenv("VERSION"),
			"revision": env.Getenv("BERTH_REVISION"),
		})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "liveness failing", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ready") })
	mux.HandleFunc("/fail-liveness", func(w http.ResponseWriter, r *http.Request) {
		failing.Store(true)
		fmt.Fprintln(w, "liveness will fail")
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		fmt.Fprintf(out, "exiting with %d\n", code)
		select {
		case exit <- code:
		default:
		}
		<-r.Context().Done() // the process ends under this request
	})
	mux.HandleFunc("/hog", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		env.Hog(mb)
		fmt.Fprintf(w, "hogging %d MiB\n", mb)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		// Long sleeps say so, so a test can tell the request is in flight.
		if ms >= 1000 {
			fmt.Fprintf(out, "sleeping %d ms\n", ms)
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slept %d ms\n", ms)
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		msg := r.URL.Query().Get("msg")
		fmt.Fprintln(out, msg)
		fmt.Fprintln(w, msg)
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Query().Get("path")
		switch r.Method {
		case http.MethodGet:
			b, err := os.ReadFile(path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Write(b)
		case http.MethodPost:
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err == nil {
				_, err = io.Copy(f, r.Body)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, "ok")
		default:
			http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
		}
	})
	// /call?url=U GETs U and answers its status and body, with the incoming
	// traceparent copied onto the outgoing call the way an instrumented
	// workload would: a call through the gateway then joins the trace. It
	// answers 502 with the error when the call fails, within timeout (a Go
	// duration, default 5s).
	mux.HandleFunc("/call", func(w http.ResponseWriter, r *http.Request) {
		timeout := 5 * time.Second
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			timeout = d
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL.Query().Get("url"), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if host := r.URL.Query().Get("host"); host != "" {
			req.Host = host
		}
		for _, h := range []string{"Traceparent", "Tracestate"} {
			if v := r.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		for _, kv := range env.Environ {
			fmt.Fprintln(w, kv)
		}
	})

	srv := &http.Server{Handler: withProtocols(mux, mux), Protocols: protocols()}
	ln, err := env.Listen(":" + port)
	if err != nil {
		fmt.Fprintln(out, "error:", err)
		return 1
	}
	fmt.Fprintf(out, "listening on :%s\n", port)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-env.Terminate:
		fmt.Fprintln(out, "shutting down")
		// In-flight requests finish; the platform kills after its grace.
		srv.Shutdown(context.Background())
		return 0
	case code := <-exit:
		srv.Close()
		return code
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(out, "error:", err)
			return 1
		}
		return 0
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
