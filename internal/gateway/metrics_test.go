package gateway

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sample gathers c and returns the sample of family name whose labels
// include want.
func sample(t *testing.T, c prometheus.Collector, name string, want map[string]string) *dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func TestCollectorCountsWhatWasAnswered(t *testing.T) {
	web := startUpstream(t, "web-1", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	})
	ep := web.endpoint()
	ep.Revision = 4
	g, url, c := startGateway(t, Config{},
		Target{Environment: "dev", Name: "web", Kind: "Service", Endpoints: []Endpoint{ep}},
		Target{Environment: "dev", Name: "resize", Kind: "Function"})
	for range 5 {
		get(t, c, url+"/", "web.dev.berth.localhost")
	}
	for range 2 {
		get(t, c, url+"/fail", "web.dev.berth.localhost")
	}
	get(t, c, url+"/", "resize.dev.berth.localhost") // no endpoint, no activator: 503
	get(t, c, url+"/", "nothing.dev.berth.localhost")

	col := g.Collector()
	count := func(labels map[string]string) float64 {
		t.Helper()
		m := sample(t, col, "berth_requests_total", labels)
		if m == nil {
			t.Fatalf("no berth_requests_total%v", labels)
		}
		return m.GetCounter().GetValue()
	}
	if n := count(map[string]string{"workload": "web", "kind": "Service", "revision": "4", "code": "200"}); n != 5 {
		t.Errorf("web 200s = %v, want 5", n)
	}
	if n := count(map[string]string{"workload": "web", "revision": "4", "code": "500"}); n != 2 {
		t.Errorf("web 500s = %v, want 2", n)
	}
	if n := count(map[string]string{"environment": "dev", "workload": "resize", "kind": "Function", "revision": "", "code": "503"}); n != 1 {
		t.Errorf("resize 503s = %v, want 1 with no revision", n)
	}
	if m := sample(t, col, "berth_unrouted_requests_total", nil); m.GetCounter().GetValue() != 1 {
		t.Errorf("unrouted = %v, want 1", m)
	}
	if m := sample(t, col, "berth_request_duration_seconds", map[string]string{"environment": "dev", "workload": "web", "revision": "4"}); m.GetHistogram().GetSampleCount() != 7 {
		t.Errorf("web latency of revision 4 = %v, want 7 samples", m)
	}
	if m := sample(t, col, "berth_request_duration_seconds", map[string]string{"workload": "resize", "revision": ""}); m.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("resize latency with no revision = %v, want 1 sample", m)
	}
	if m := sample(t, col, "berth_requests_in_flight", map[string]string{"environment": "dev", "workload": "web"}); m == nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("web in flight after every answer = %v, want 0", m)
	}
}

// TestLatencyByRevision: during a split each revision's answers land in a
// histogram of their own, whatever their status, so a slow canary shows
// apart from the stable revision.
func TestLatencyByRevision(t *testing.T) {
	g := New(Config{})
	g.SetTargets([]Target{{Environment: "dev", Name: "web", Kind: "Service", Endpoints: []Endpoint{{ID: "e", Address: "127.0.0.1:1"}}}})
	rt := g.table.Load().byHost["web.dev"]
	for range 3 {
		g.metrics.observe(rt, 1, 200, time.Millisecond)
	}
	g.metrics.observe(rt, 1, 500, time.Millisecond)
	g.metrics.observe(rt, 2, 200, 2*time.Second)
	g.metrics.observe(rt, 2, 502, 2*time.Second)
	col := g.Collector()
	for rev, want := range map[string]struct {
		n   uint64
		sum float64
	}{"1": {4, 0.004}, "2": {2, 4}} {
		m := sample(t, col, "berth_request_duration_seconds", map[string]string{"environment": "dev", "workload": "web", "revision": rev})
		if h := m.GetHistogram(); h.GetSampleCount() != want.n || math.Abs(h.GetSampleSum()-want.sum) > 1e-9 {
			t.Errorf("revision %s: %d samples summing %v, want %d summing %v", rev, h.GetSampleCount(), h.GetSampleSum(), want.n, want.sum)
		}
	}
	if m := sample(t, col, "berth_requests_total", map[string]string{"revision": "2", "code": "502"}); m.GetCounter().GetValue() != 1 {
		t.Errorf("revision 2 502s = %v, want 1", m)
	}
}

// TestObserveDoesNotAllocate: once a target's series are cached, counting
// a request costs no allocation, the revision label included.
func TestObserveDoesNotAllocate(t *testing.T) {
	g := New(Config{})
	g.SetTargets([]Target{{Environment: "dev", Name: "web", Kind: "Service", Endpoints: []Endpoint{{ID: "e", Address: "127.0.0.1:1"}}}})
	rt := g.table.Load().byHost["web.dev"]
	g.metrics.observe(rt, 1, 200, time.Millisecond)
	g.metrics.observe(rt, 2, 200, time.Millisecond)
	if n := testing.AllocsPerRun(100, func() {
		g.metrics.observe(rt, 1, 200, time.Millisecond)
		g.metrics.observe(rt, 2, 200, time.Millisecond)
	}); n != 0 {
		t.Errorf("%v allocations per observe, want 0", n)
	}
}
