package gateway

import (
	"math"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"
)

// revEndpoint is an upstream as an endpoint of revision rev.
func revEndpoint(u *upstream, rev int64) Endpoint {
	ep := u.endpoint()
	ep.Revision = rev
	return ep
}

func TestSplitShares(t *testing.T) {
	a1, b1 := startUpstream(t, "a1", nil), startUpstream(t, "b1", nil)
	a2 := startUpstream(t, "a2", nil)
	a3 := startUpstream(t, "a3", nil)
	_, url, c := startGateway(t, Config{}, Target{
		Environment: "dev", Name: "web", Kind: "Service",
		Endpoints: []Endpoint{revEndpoint(a1, 1), revEndpoint(b1, 1), revEndpoint(a2, 2), revEndpoint(a3, 3)},
		Split:     []RevisionShare{{Revision: 1, Percent: 85}, {Revision: 2, Percent: 10}, {Revision: 3, Percent: 5}},
	})
	const n = 10000
	for range n {
		res, _ := get(t, c, url+"/", "web.dev.berth.localhost")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	got := map[string]float64{
		"1": float64(a1.hits.Load()+b1.hits.Load()) * 100 / n,
		"2": float64(a2.hits.Load()) * 100 / n,
		"3": float64(a3.hits.Load()) * 100 / n,
	}
	want := map[string]float64{"1": 85, "2": 10, "3": 5}
	for rev, w := range want {
		if math.Abs(got[rev]-w) > 1 {
			t.Errorf("revision %s got %.2f%% of %d requests, want %.0f%% ± 1", rev, got[rev], n, w)
		}
	}
	t.Logf("shares over %d requests: %v", n, got)
}

func TestSplitFallsBackWhenARevisionHasNoEndpoint(t *testing.T) {
	a1 := startUpstream(t, "a1", nil)
	_, url, c := startGateway(t, Config{}, Target{
		Environment: "dev", Name: "web", Kind: "Service",
		Endpoints: []Endpoint{revEndpoint(a1, 1)},
		Split:     []RevisionShare{{Revision: 1, Percent: 50}, {Revision: 2, Percent: 50}},
	})
	for range 50 {
		res, body := get(t, c, url+"/", "web.dev.berth.localhost")
		if e := decodeEcho(t, res, body); e.Upstream != "a1" {
			t.Fatalf("answered by %s", e.Upstream)
		}
	}
}

func TestTagReachesOnlyItsRevision(t *testing.T) {
	a1, a2 := startUpstream(t, "a1", nil), startUpstream(t, "a2", nil)
	_, url, c := startGateway(t, Config{}, Target{
		Environment: "dev", Name: "web", Kind: "Service",
		Endpoints: []Endpoint{revEndpoint(a1, 1), revEndpoint(a2, 2)},
		// Revision 2 has no share: only its tag reaches it.
		Split: []RevisionShare{{Revision: 1, Percent: 100}, {Revision: 2, Percent: 0}},
		Tags:  []Tag{{Name: "next", Revision: 2}, {Name: "stable", Revision: 1}},
	}, Target{Environment: "dev", Name: "other", Kind: "Service", Endpoints: []Endpoint{revEndpoint(startUpstream(t, "o", nil), 1)}})
	for range 100 {
		res, body := get(t, c, url+"/", "next-web.dev.berth.localhost")
		if e := decodeEcho(t, res, body); e.Upstream != "a2" {
			t.Fatalf("tag next answered by %s", e.Upstream)
		}
		res, body = get(t, c, url+"/", "stable-web.dev.berth.localhost")
		if e := decodeEcho(t, res, body); e.Upstream != "a1" {
			t.Fatalf("tag stable answered by %s", e.Upstream)
		}
		res, body = get(t, c, url+"/", "web.dev.berth.localhost")
		if e := decodeEcho(t, res, body); e.Upstream != "a1" {
			t.Fatalf("revision 2 without a share answered the workload's host (%s)", e.Upstream)
		}
	}
	res, body := get(t, c, url+"/", "nope-web.dev.berth.localhost")
	decodeError(t, res, body, http.StatusNotFound, "NotFound")
}

func TestStickySessionKeepsTheFirstRevision(t *testing.T) {
	a1, a2 := startUpstream(t, "a1", nil), startUpstream(t, "a2", nil)
	_, url, _ := startGateway(t, Config{}, Target{
		Environment: "dev", Name: "web", Kind: "Service", Sticky: true,
		Endpoints: []Endpoint{revEndpoint(a1, 1), revEndpoint(a2, 2)},
		Split:     []RevisionShare{{Revision: 1, Percent: 50}, {Revision: 2, Percent: 50}},
	})
	seen := map[string]int{}
	for range 20 {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		res, body := get(t, c, url+"/", "web.dev.berth.localhost")
		first := decodeEcho(t, res, body).Upstream
		seen[first]++
		for range 20 {
			res, body := get(t, c, url+"/", "web.dev.berth.localhost")
			if e := decodeEcho(t, res, body); e.Upstream != first {
				t.Fatalf("a client first on %s was sent to %s", first, e.Upstream)
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("20 new clients all got the same revision: %v", seen)
	}
}

func TestRevisionStats(t *testing.T) {
	ok := startUpstream(t, "ok", nil)
	bad := startUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	g, url, c := startGateway(t, Config{}, Target{
		Environment: "dev", Name: "web", Kind: "Service",
		Endpoints: []Endpoint{revEndpoint(ok, 1), revEndpoint(bad, 2)},
		Split:     []RevisionShare{{Revision: 1, Percent: 50}, {Revision: 2, Percent: 50}},
	})
	base := g.RevisionStats("dev", "web")
	for range 200 {
		get(t, c, url+"/", "web.dev.berth.localhost")
	}
	now := g.RevisionStats("dev", "web")
	s1, s2 := now[1].Sub(base[1]), now[2].Sub(base[2])
	if s1.Requests+s2.Requests != 200 || s1.Errors != 0 || s2.Errors != s2.Requests || s2.Requests == 0 {
		t.Fatalf("revision 1: %+v; revision 2: %+v", s1, s2)
	}
	if s1.ErrorRate() != 0 || s2.ErrorRate() != 1 {
		t.Errorf("error rates %v %v", s1.ErrorRate(), s2.ErrorRate())
	}
	if q := s1.Quantile(0.99); q <= 0 || q > time.Second {
		t.Errorf("p99 of loopback answers: %v", q)
	}
}
