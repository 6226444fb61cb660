package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	v1 "berth.dev/berth/api/v1"
)

// brokenEndpoint accepts connections and closes each at once, before any
// answer (a crashing process), counting them.
func brokenEndpoint(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.(*net.TCPConn).SetLinger(0) // a reset, as a crash gives
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// An endpoint whose connections fail failThreshold times in a row gets no
// more requests for a while; idempotent requests it failed were sent to
// another endpoint, so no client saw the failures.
func TestPassiveHealthTakesAFailingEndpointOut(t *testing.T) {
	good := startUpstream(t, "good", nil)
	badAddr, badConns := brokenEndpoint(t)
	tg := target("dev", "api", good)
	tg.Endpoints = append(tg.Endpoints, Endpoint{ID: "bad", Address: badAddr})
	_, url, c := startGateway(t, Config{}, tg)
	hc := hostClient(c, "api.dev.berth.localhost")

	for i := range 200 {
		res, body := do(t, hc, mustRequest(t, http.MethodGet, url+"/", nil))
		if e := decodeEcho(t, res, body); e.Upstream != "good" {
			t.Fatalf("request %d answered by %q", i, e.Upstream)
		}
	}
	// Each failed request is retried on a fresh connection once when it
	// went out on a pooled one; the broken endpoint never pools any.
	if n := badConns.Load(); n > failThreshold {
		t.Errorf("the failing endpoint got %d connections in 200 requests, want at most %d", n, failThreshold)
	}
	if n := good.hits.Load(); n != 200 {
		t.Errorf("the healthy endpoint served %d of 200", n)
	}
}

// When every endpoint fails, the answer says so and names each with its
// error.
func TestAllEndpointsFailingIsAClearError(t *testing.T) {
	a, _ := brokenEndpoint(t)
	b := deadAddress(t)
	_, url, c := startGateway(t, Config{}, Target{Environment: "dev", Name: "api", Kind: "Service",
		Endpoints: []Endpoint{{ID: "a", Address: a}, {ID: "b", Address: b}}})
	for range 5 { // also once both are resting
		res, body := get(t, c, url+"/", "api.dev.berth.localhost")
		eb := decodeError(t, res, body, http.StatusBadGateway, v1.ErrBadGateway)
		if !strings.HasPrefix(eb.Message, "all 2 endpoints failed") || !strings.Contains(eb.Message, "endpoint a (") ||
			!strings.Contains(eb.Message, "endpoint b (") || !strings.Contains(eb.Message, "connection refused") {
			t.Errorf("502 message %q does not say that all endpoints failed, and why each", eb.Message)
		}
	}
}

// A request that may not be sent twice (a POST) is not retried after its
// connection broke once it was sent: the client gets the 502.
func TestNonIdempotentRequestIsNotRetriedAfterSending(t *testing.T) {
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read the request, then die without answering.
			go func() {
				buf := make([]byte, 4096)
				if n, _ := c.Read(buf); n > 0 {
					hits.Add(1)
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}()
		}
	}()
	good := startUpstream(t, "good", nil)
	tg := target("dev", "api", good)
	tg.Endpoints = []Endpoint{{ID: "dies", Address: ln.Addr().String()}}
	_, url, c := startGateway(t, Config{}, tg)
	hc := hostClient(c, "api.dev.berth.localhost")
	res, err := hc.Post(url+"/orders", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || hits.Load() != 1 {
		t.Errorf("POST to an endpoint that died after reading it: status %d after %d deliveries, want 502 after 1", res.StatusCode, hits.Load())
	}
}
