package gateway

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/testutil"
)

// With a per-endpoint concurrency of 1, requests beyond one per endpoint
// wait in the gateway (none fails, none overloads an instance), and a new
// endpoint listed while they wait takes some of them.
func TestConcurrencyCapQueuesInTheGateway(t *testing.T) {
	var now, peak atomic.Int64
	release := make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		now.Add(-1)
		w.Write([]byte("ok"))
	}
	a := startUpstream(t, "a", slow)
	b := startUpstream(t, "b", slow)
	target := Target{Environment: "default", Name: "fn", Kind: "Function", Concurrency: 1, Endpoints: []Endpoint{a.endpoint()}}
	g, url, c := startGateway(t, Config{}, target)

	const n = 6
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			res, _ := get(t, c, url+"/", "fn.default.berth.localhost")
			codes[i] = res.StatusCode
		})
	}
	// All six are in the gateway; one is at the endpoint.
	testutil.WaitForState(t, 5*time.Second, "all in the gateway, one at the endpoint", func() (bool, string) {
		inFlight, _ := g.Load("default", "fn")
		return inFlight == n && a.hits.Load() == 1, fmt.Sprintf("in flight %d, upstream hits %d", inFlight, a.hits.Load())
	})
	// A second endpoint arrives: a waiting request goes to it at once.
	target.Endpoints = append(target.Endpoints, b.endpoint())
	g.SetTargets([]Target{target})
	testutil.WaitForState(t, 5*time.Second, "one request on the new endpoint", func() (bool, string) {
		return b.hits.Load() == 1, fmt.Sprintf("the new endpoint got %d requests", b.hits.Load())
	})
	close(release)
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusOK {
			t.Fatalf("request %d: status %d", i, code)
		}
	}
	if peak.Load() > 2 {
		t.Fatalf("%d requests ran at once on 2 endpoints of concurrency 1", peak.Load())
	}
	if a.hits.Load()+b.hits.Load() != n {
		t.Fatalf("hits a=%d b=%d, want %d in all", a.hits.Load(), b.hits.Load(), n)
	}
}
