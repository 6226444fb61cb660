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

// A request that finds every endpoint at its cap waits for a slot even
// when one frees up just after it looked: it must not conclude that there
// is no endpoint at all and answer 503 (a function scaled down to one
// instance under steady load lost a request about once in 30,000 so).
func TestSlotFreedAfterAFullPickIsWaitedFor(t *testing.T) {
	release := make(chan struct{})
	a := startUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Write([]byte("ok"))
	})
	g, url, c := startGateway(t, Config{}, Target{Environment: "default", Name: "fn", Kind: "Function", Concurrency: 1, Endpoints: []Endpoint{a.endpoint()}})

	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url+"/slow", nil)
		req.Host = "fn.default.berth.localhost"
		res, err := c.Do(req)
		if err != nil {
			first <- 0
			return
		}
		res.Body.Close()
		first <- res.StatusCode
	}()
	testutil.WaitFor(t, 5*time.Second, "the first request holding the endpoint's only slot", func() bool {
		return g.InFlight("a") == 1
	})
	// The second request finds the endpoint full; the first one finishes
	// right then, before the second decides what to do. (The hook runs on
	// the gateway's goroutine: it polls rather than fail the test there.)
	var once sync.Once
	hook := func() {
		once.Do(func() {
			close(release)
			for deadline := time.Now().Add(5 * time.Second); g.InFlight("a") != 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		})
	}
	testHookNonePicked.Store(&hook)
	t.Cleanup(func() { testHookNonePicked.Store(nil) })
	res, body := get(t, c, url+"/", "fn.default.berth.localhost")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("second request: %d %s", res.StatusCode, body)
	}
	if code := <-first; code != http.StatusOK {
		t.Fatalf("first request: %d", code)
	}
}
