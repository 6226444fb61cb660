package controller_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/testutil"
)

// send makes n requests to NAME.default through the plane's gateway and
// counts the answers by revision ("fail-CODE" for anything but a 200).
func (p *plane) send(t *testing.T, url, name string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
				req.Host = name + ".default.berth.localhost"
				key := "error"
				if res, err := http.DefaultClient.Do(req); err == nil {
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					key = fmt.Sprintf("fail-%d", res.StatusCode)
					if res.StatusCode == http.StatusOK {
						var r struct{ Revision string }
						json.Unmarshal(body, &r)
						key = r.Revision
					}
				}
				mu.Lock()
				got[key]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

func readyOf(s *v1.Service) map[int64]int {
	m := map[int64]int{}
	for _, i := range s.Status.Instances {
		if i.Ready && i.Phase != v1.PhaseTerminating {
			m[i.Revision]++
		}
	}
	return m
}

func TestTrafficSplitRunsBothRevisions(t *testing.T) {
	p := newPlane(t)
	srv := httptest.NewServer(p.gw)
	t.Cleanup(srv.Close)
	p.images.set("web:1", "sha256:"+strings.Repeat("1", 64))
	p.images.set("web:2", "sha256:"+strings.Repeat("2", 64))
	p.create(service("web", "web:1", 2))
	p.waitService("web", "revision 1", func(s *v1.Service) bool { return s.Status.ReadyReplicas == 2 })
	update[v1.Service](p, svcKey("web"), func(s *v1.Service) {
		s.Spec.Template.Image = "web:2"
		s.Spec.Traffic = []v1.TrafficTarget{{Revision: 1, Percent: 50}, {LatestRevision: true, Percent: 50, Tag: "next"}}
	})
	svc := p.waitService("web", "both revisions with their share", func(s *v1.Service) bool {
		r := readyOf(s)
		return s.Status.Revision == 2 && r[1] == 1 && r[2] == 1 && len(s.Status.Instances) == 2 &&
			hasCondition(s.Status.Conditions, v1.ConditionProgressing, "RolloutComplete")
	})
	if len(svc.Status.Traffic) != 2 || svc.Status.Traffic[1].Revision != 2 {
		t.Errorf("status.traffic %v", svc.Status.Traffic)
	}
	testutil.WaitForState(t, 10*time.Second, "both revisions answering", func() (bool, string) {
		got := p.send(t, srv.URL, "web", 400)
		return got["1"] > 150 && got["2"] > 150 && got["1"]+got["2"] == 400, fmt.Sprint(got)
	})
	if got := p.send(t, srv.URL, "next-web", 100); got["2"] != 100 {
		t.Errorf("the tag reached %v", got)
	}
	// Back to the latest only: revision 1 goes.
	update[v1.Service](p, svcKey("web"), func(s *v1.Service) { s.Spec.Traffic = nil })
	p.waitService("web", "revision 2 only", func(s *v1.Service) bool {
		r := readyOf(s)
		return r[1] == 0 && r[2] == 2 && len(s.Status.Instances) == 2 && len(s.Status.Traffic) == 0
	})
}

func canaryService(image string, fail int) *v1.Service {
	s := service("shop", image, 2)
	s.Spec.Env = []v1.EnvVar{{Name: "FAIL_PERCENT", Value: fmt.Sprint(fail)}}
	rate := 0.05
	s.Spec.Strategy.Canary = &v1.Canary{
		Steps:    []v1.CanaryStep{{Percent: 20, Pause: "300ms"}, {Percent: 50, Pause: "300ms"}},
		Analysis: v1.CanaryAnalysis{MaxErrorRate: &rate, MinRequests: 20, Interval: "50ms"},
	}
	return s
}

func TestCanaryPromotedThenRolledBack(t *testing.T) {
	p := newPlane(t)
	srv := httptest.NewServer(p.gw)
	t.Cleanup(srv.Close)
	p.images.set("shop:1", "sha256:"+strings.Repeat("1", 64))
	p.images.set("shop:2", "sha256:"+strings.Repeat("2", 64))
	p.create(canaryService("shop:1", 0))
	p.waitService("shop", "revision 1", func(s *v1.Service) bool { return s.Status.ReadyReplicas == 2 })

	// Load all along; every answer is counted.
	var mu sync.Mutex
	total := map[string]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			got := p.send(t, srv.URL, "shop", 40)
			mu.Lock()
			for k, n := range got {
				total[k] += n
			}
			mu.Unlock()
		}
	}()
	take := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := total
		total = map[string]int{}
		return out
	}

	update[v1.Service](p, svcKey("shop"), func(s *v1.Service) { *s = *canaryUpdate(s, canaryService("shop:2", 0)) })
	p.waitService("shop", "revision 2 promoted and alone", func(s *v1.Service) bool {
		c := s.Status.Canary
		r := readyOf(s)
		return c != nil && c.Revision == 2 && c.Phase == v1.CanaryPromoted && r[2] == 2 && r[1] == 0 && len(s.Status.Instances) == 2
	})
	healthy := take()
	t.Logf("healthy canary: %v", healthy)
	if healthy["1"] == 0 || healthy["2"] == 0 || len(healthy) != 2 {
		t.Errorf("answers during a healthy canary: %v", healthy)
	}
	for _, want := range []string{"CanaryStarted", "CanaryStep", "CanaryPromoted"} {
		if !contains(p.eventReasons("Service/shop"), want) {
			t.Errorf("no %s event: %v", want, p.eventReasons("Service/shop"))
		}
	}

	update[v1.Service](p, svcKey("shop"), func(s *v1.Service) { *s = *canaryUpdate(s, canaryService("shop:1", 20)) })
	svc := p.waitService("shop", "revision 3 rolled back and gone", func(s *v1.Service) bool {
		c := s.Status.Canary
		r := readyOf(s)
		return c != nil && c.Revision == 3 && c.Phase == v1.CanaryRolledBack && r[3] == 0 && r[2] == 2 && len(s.Status.Instances) == 2
	})
	if c := svc.Status.Canary; c.Step != 0 || !strings.Contains(c.Message, "error rate") {
		t.Errorf("rolled back at step %d: %q", c.Step, c.Message)
	}
	if !hasCondition(svc.Status.Conditions, v1.ConditionProgressing, "CanaryRolledBack") {
		t.Errorf("conditions %+v", svc.Status.Conditions)
	}
	close(stop)
	<-done
	bad := take()
	t.Logf("failing canary: %v", bad)
	n := 0
	for k, c := range bad {
		n += c
		if k != "2" && k != "3" && k != "fail-500" {
			t.Errorf("%d answers %s", c, k)
		}
	}
	if f := bad["fail-500"]; f == 0 || f > n/5 {
		t.Errorf("%d of %d failed: want some, within the canary's 20%% share", f, n)
	}
	if after := p.send(t, srv.URL, "shop", 200); after["2"] != 200 {
		t.Errorf("after the rollback: %v", after)
	}
}

// canaryUpdate carries next's spec onto the stored object.
func canaryUpdate(cur, next *v1.Service) *v1.Service {
	out := *cur
	out.Spec = next.Spec
	return &out
}

func TestFunctionCanaryRolledBack(t *testing.T) {
	p := newPlane(t)
	srv := httptest.NewServer(p.gw)
	t.Cleanup(srv.Close)
	p.images.set("pay:1", "sha256:"+strings.Repeat("1", 64))
	p.images.set("pay:2", "sha256:"+strings.Repeat("2", 64))
	max, rate := int32(3), 0.05
	fn := func(image string, fail int) v1.FunctionSpec {
		return v1.FunctionSpec{
			Template:    v1.Template{Image: image, Port: 8080, Env: []v1.EnvVar{{Name: "FAIL_PERCENT", Value: fmt.Sprint(fail)}}},
			Concurrency: 8,
			Scale:       v1.FunctionScale{Max: &max},
			Strategy: v1.FunctionStrategy{Canary: &v1.Canary{
				Steps:    []v1.CanaryStep{{Percent: 30, Pause: "300ms"}},
				Analysis: v1.CanaryAnalysis{MaxErrorRate: &rate, MinRequests: 20, Interval: "50ms"},
			}},
		}
	}
	key := store.Key{Kind: v1.KindFunction, Environment: "default", Name: "pay"}
	p.create(&v1.Function{TypeMeta: tm(v1.KindFunction), Metadata: v1.ObjectMeta{Name: "pay", Environment: "default"}, Spec: fn("pay:1", 0)})
	p.scaler.set("default", "pay", 2)
	testutil.WaitForState(t, 20*time.Second, "revision 1 awake", func() (bool, string) {
		f, _ := get[v1.Function](p, key)
		return f.Status.Revision == 1 && f.Status.ReadyInstances == 2, fmt.Sprint(f.Status.Instances)
	})
	update[v1.Function](p, key, func(f *v1.Function) { f.Spec = fn("pay:2", 20) })
	// Demand shared: 2 × 70 % → 2 of revision 1, 2 × 30 % → 1 of revision 2.
	testutil.WaitForState(t, 20*time.Second, "the canary of revision 2 running", func() (bool, string) {
		f, _ := get[v1.Function](p, key)
		ready := map[int64]int{}
		for _, i := range f.Status.Instances {
			if i.Ready && i.Phase != v1.PhaseTerminating {
				ready[i.Revision]++
			}
		}
		return f.Status.Canary.Active() && ready[1] == 2 && ready[2] == 1, fmt.Sprint(ready, f.Status.Canary)
	})
	var got map[string]int
	testutil.WaitForState(t, 20*time.Second, "the canary rolled back", func() (bool, string) {
		g := p.send(t, srv.URL, "pay", 100)
		for k, n := range g {
			if got == nil {
				got = map[string]int{}
			}
			got[k] += n
		}
		f, _ := get[v1.Function](p, key)
		return f.Status.Canary != nil && f.Status.Canary.Phase == v1.CanaryRolledBack, fmt.Sprint(f.Status.Canary)
	})
	t.Logf("answers: %v", got)
	for k := range got {
		if k != "1" && k != "2" && k != "fail-500" {
			t.Errorf("answers %s: %v", k, got)
		}
	}
	testutil.WaitForState(t, 20*time.Second, "revision 2 gone", func() (bool, string) {
		f, _ := get[v1.Function](p, key)
		for _, i := range f.Status.Instances {
			if i.Revision == 2 && i.Phase != v1.PhaseTerminating {
				return false, fmt.Sprint(f.Status.Instances)
			}
		}
		return true, ""
	})
	if after := p.send(t, srv.URL, "pay", 200); after["1"] != 200 {
		t.Errorf("after the rollback: %v", after)
	}
}
