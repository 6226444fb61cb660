package gateway

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// A burst of route changes (services listed and dropped, the target's own
// endpoints re-listed in another order, a new revision) while clients
// keep calling a target fails none of their requests, and each new
// service is routed as soon as SetTargets returns.
func TestRouteChangeBurstUnderLoadFailsNoRequest(t *testing.T) {
	u1, u2 := startUpstream(t, "u1", nil), startUpstream(t, "u2", nil)
	extra := startUpstream(t, "extra", nil)
	api := target("dev", "api", u1, u2)
	g, url, c := startGateway(t, Config{}, api)

	var served, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := mustRequest(t, http.MethodGet, url+"/", nil)
				req.Host = "api.dev.berth.localhost"
				res, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				if err != nil || res.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprint(err, res))
					continue
				}
				served.Add(1)
			}
		}()
	}
	for i := range 200 {
		ts := []Target{api}
		if i%2 == 1 {
			reordered := target("dev", "api", u2, u1)
			for j := range reordered.Endpoints {
				reordered.Endpoints[j].Revision = int64(1 + i%3)
			}
			ts[0] = reordered
		}
		name := fmt.Sprintf("svc%d", i)
		ts = append(ts, target("dev", name, extra))
		g.SetTargets(ts)
		// Routed at once: the table is swapped before SetTargets returns.
		req := mustRequest(t, http.MethodGet, url+"/", nil)
		req.Host = name + ".dev.berth.localhost"
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("service %s answered %d right after SetTargets listed it", name, res.StatusCode)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during 200 route changes; first: %v", failed.Load(), failed.Load()+served.Load(), firstFailure.Load())
	}
	if served.Load() == 0 {
		t.Error("no request was served during the burst")
	}
	t.Logf("%d requests served during 200 route changes", served.Load())
}
