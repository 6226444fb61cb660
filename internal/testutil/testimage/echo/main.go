// Command echo is the workload Berth's tests run in containers: a static
// HTTP server that answers on $PORT and can be told to misbehave (fail its
// liveness probe, exit, eat memory, sleep) so tests can watch the platform
// react.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	hogMB     = flag.Int("hog-mb", 0, "allocate and touch this many MiB at start, then serve")
	printCaps = flag.Bool("print-caps", false, "print CapEff and NoNewPrivs from /proc/self/status, then exit")
	exitCode  = flag.Int("exit", -1, "print a line and exit with this code at once")
	forkBomb  = flag.Int("fork-bomb", 0, "start up to this many copies of itself that wait forever, stop at the first that fails to start, print how many started, then exit")
	wait      = flag.Bool("wait", false, "wait forever (a fork bomb's child)")
)

var hogged [][]byte

func main() {
	flag.Parse()
	if *printCaps {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "CapEff:") || strings.HasPrefix(l, "CapBnd:") || strings.HasPrefix(l, "NoNewPrivs:") {
				fmt.Println(l)
			}
		}
		return
	}
	if *wait {
		for {
			time.Sleep(time.Hour)
		}
	}
	if *forkBomb > 0 {
		bomb(*forkBomb)
		return
	}
	if *exitCode >= 0 {
		fmt.Printf("exiting with %d\n", *exitCode)
		os.Exit(*exitCode)
	}
	if *hogMB > 0 {
		fmt.Printf("hogging %d MiB\n", *hogMB)
		hog(*hogMB)
	}

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	var failing atomic.Bool
	var flakyMu sync.Mutex
	flaky := map[string]int{}
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
			fmt.Printf("invocation %s attempt %s path %s body %q\n", id, r.Header.Get("X-Berth-Attempt"), r.URL.Path, body)
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
		host, _ := os.Hostname()
		writeJSON(w, map[string]string{
			"hostname": host,
			"version":  os.Getenv("VERSION"),
			"revision": os.Getenv("BERTH_REVISION"),
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
		fmt.Printf("exiting with %d\n", code)
		os.Exit(code)
	})
	mux.HandleFunc("/hog", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		hog(mb)
		fmt.Fprintf(w, "hogging %d MiB\n", mb)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		// Long sleeps say so, so a test can tell the request is in flight.
		if ms >= 1000 {
			fmt.Printf("sleeping %d ms\n", ms)
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
		fmt.Println(msg)
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
		for _, kv := range os.Environ() {
			fmt.Fprintln(w, kv)
		}
	})

	srv := &http.Server{Addr: ":" + port, Handler: mux}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		fmt.Println("shutting down")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Printf("listening on :%s\n", port)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	// ListenAndServe returns as soon as Shutdown starts; wait for in-flight
	// requests by letting Shutdown finish.
	srv.Shutdown(context.Background())
	os.Exit(0)
}

// bomb starts up to n children that wait forever and reports how far it
// got. Its children die with it: it is the container's init process.
func bomb(n int) {
	self, err := os.Executable()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for i := 0; i < n; i++ {
		c := exec.Command(self, "-wait")
		// One P each keeps every child to a few threads, so the bomb is
		// about processes.
		c.Env = []string{"GOMAXPROCS=1"}
		if err := c.Start(); err != nil {
			fmt.Printf("fork bomb: %d started, then: %v\n", i, err)
			return
		}
	}
	fmt.Printf("fork bomb: %d started, none refused\n", n)
}

func hog(mb int) {
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	hogged = append(hogged, b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
