package loadgen

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

func TestRunCountsRequestsAndLatency(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%10 == 0 {
			http.Error(w, "endpoint x is down", http.StatusBadGateway)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	r, err := Run(t.Context(), Options{URL: srv.URL, Concurrency: 4, Requests: 200})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 200 || r.StatusCounts[200] != 180 || r.StatusCounts[502] != 20 || r.Failures != 20 {
		t.Errorf("result %s, want 200 requests of which 20 failed with 502", r)
	}
	if len(r.Errors) != 5 || !strings.Contains(r.Errors[0], "status 502: endpoint x is down") {
		t.Errorf("kept errors %q, want five naming the 502 and its body", r.Errors)
	}
	if !(r.P50 > 0 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max) || r.RPS <= 0 {
		t.Errorf("percentiles out of order or no rate: %s", r)
	}
	if s := r.String(); !strings.HasPrefix(s, "requests=200 failures=20 rps=") || !strings.Contains(s, "status=[200:180 502:20]") {
		t.Errorf("String() = %q", s)
	}
}

func TestRunForDuration(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	start := time.Now()
	r, err := Run(t.Context(), Options{URL: srv.URL, Concurrency: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("a 200ms run took %s", took)
	}
	if r.Requests == 0 || r.Failures != 0 {
		t.Errorf("result %s", r)
	}
}

func TestBackgroundLoadWithHostOverride(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "api.dev.berth.localhost" {
			http.Error(w, "wrong host "+r.Host, http.StatusNotFound)
			return
		}
		seen.Add(1)
	}))
	defer srv.Close()

	l, err := Start(t.Context(), Options{URL: srv.URL + "/x", Host: "api.dev.berth.localhost", Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "50 requests of background load", func() bool { return seen.Load() >= 50 })
	r := l.Stop()
	if r.Requests < 50 || r.Failures != 0 || r.Requests != seen.Load() {
		t.Errorf("result %s, server saw %d; errors %q", r, seen.Load(), r.Errors)
	}
}

func TestTransportErrorsAreFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := Run(t.Context(), Options{URL: "http://" + addr + "/", Requests: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 3 || r.Failures != 3 || len(r.Errors) != 3 || !strings.Contains(r.Errors[0], "refused") {
		t.Errorf("result %s errors %q, want 3 refused", r, r.Errors)
	}
}

func TestCancelledContextIsNotAFailure(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	ctx, cancel := context.WithCancel(t.Context())
	l, err := Start(ctx, Options{URL: srv.URL, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if r := l.Wait(); r.Failures != 0 {
		t.Errorf("requests aborted by the caller counted as failures: %s %q", r, r.Errors)
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := Run(t.Context(), Options{URL: "http://127.0.0.1:1/"}); err == nil {
		t.Error("Run without Duration or Requests: want an error")
	}
	if _, err := Start(t.Context(), Options{URL: "not a url"}); err == nil {
		t.Error("Start with a bad URL: want an error")
	}
}
