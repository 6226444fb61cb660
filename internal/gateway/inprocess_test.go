package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

// roundTripFunc is an in-process endpoint, as a Wasm function is.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An endpoint with a Transport is served in-process, never dialled, with
// the same concurrency cap, counters and error handling as any endpoint.
func TestInProcessEndpoint(t *testing.T) {
	var now, peak, served atomic.Int64
	release := make(chan struct{})
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if r.URL.Path == "/wait" {
			<-release
		}
		now.Add(-1)
		served.Add(1)
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
		}
		return &http.Response{
			StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"X-Served": {"in-process"}},
			Body:   io.NopCloser(strings.NewReader(fmt.Sprintf("%s %s %s", r.Method, r.URL.Path, body))),
			// No address to dial: the request must never leave the process.
			Request: r,
		}, nil
	})
	target := Target{Environment: "default", Name: "wasm", Kind: "Function", Concurrency: 2,
		Endpoints: []Endpoint{{ID: "default.wasm", Address: "wasm:r1", Revision: 1, Transport: tr}}}
	g, url, c := startGateway(t, Config{}, target)

	req := mustRequest(t, http.MethodPost, url+"/hello", strings.NewReader("body"))
	req.Host = "wasm.default.berth.localhost"
	res, body := do(t, c, req)
	if res.StatusCode != 200 || string(body) != "POST /hello body" || res.Header.Get("X-Served") != "in-process" {
		t.Fatalf("got %d %q %v", res.StatusCode, body, res.Header)
	}

	const n = 5
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, _ := get(t, c, url+"/wait", "wasm.default.berth.localhost")
			if res.StatusCode != 200 {
				t.Errorf("status %d", res.StatusCode)
			}
		})
	}
	testutil.WaitForState(t, 5*time.Second, "all in the gateway, two running", func() (bool, string) {
		inFlight, _ := g.Load("default", "wasm")
		return inFlight == n && now.Load() == 2, fmt.Sprintf("in flight %d, running %d", inFlight, now.Load())
	})
	close(release)
	wg.Wait()
	if peak.Load() != 2 {
		t.Fatalf("peak of %d at once, want the cap of 2", peak.Load())
	}
	if st := statsOf(g, "default", "wasm"); st.Status[200] != n+1 {
		t.Fatalf("counted %v, want %d answers of 200", st.Status, n+1)
	}
}
