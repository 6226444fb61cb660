package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

const splitService = `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: web
spec:
  image: %s
  replicas: 2
  port: 8080
  env:
    - {name: FAIL_PERCENT, value: "%d"}
  readinessProbe:
    httpGet: {path: /ready}
    periodSeconds: 1
  strategy: {maxSurge: 1, maxUnavailable: 0}
  terminationGracePeriodSeconds: 2
`

// readyByRevision counts a service's ready instances per revision.
func readyByRevision(svc *v1.Service) map[int64]int {
	m := map[int64]int{}
	for _, i := range svc.Status.Instances {
		if i.Ready && i.Phase != v1.PhaseTerminating {
			m[i.Revision]++
		}
	}
	return m
}

// countRevisions sends n requests to host through the gateway from
// workers at once, and counts the answers by the revision that gave them
// ("failed" for anything but a 200).
func (s *server) countRevisions(t *testing.T, host string, n int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				code, body, err := s.gatewayGet(host, "/")
				key := "failed"
				if err == nil && code == http.StatusOK {
					var r struct{ Revision string }
					json.Unmarshal([]byte(body), &r)
					key = r.Revision
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

func TestTrafficSplitAndTags(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "image", "import", imageV2)
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "v1.yaml", fmt.Sprintf(splitService, echoV1, 0)), "--wait", "--timeout", "2m")
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "v2.yaml", fmt.Sprintf(splitService, echoV2, 0)), "--wait", "--timeout", "2m")
	if svc := s.service("default", "web"); svc.Status.Revision != 2 {
		t.Fatalf("after the second apply: %s", instancesOf(svc))
	}

	// Bad input names the field and changes nothing.
	_, stderr, code := s.berth("", "traffic", "web", "1=70", "2=20")
	if code == 0 || !strings.Contains(stderr, "spec.traffic") || !strings.Contains(stderr, "sum to 90") {
		t.Fatalf("a split summing to 90: exit %d, %s", code, stderr)
	}
	_, stderr, code = s.berth("", "traffic", "web", "9=50", "latest=50")
	if code == 0 || !strings.Contains(stderr, "spec.traffic[0].revision") {
		t.Fatalf("an unknown revision: exit %d, %s", code, stderr)
	}
	if svc := s.service("default", "web"); len(svc.Spec.Traffic) != 0 {
		t.Fatalf("refused traffic stored: %v", svc.Spec.Traffic)
	}

	out := s.mustBerth("", "traffic", "web", "1=70", "latest=30:next")
	if !strings.Contains(out, "1=70 latest=30:next") {
		t.Fatalf("traffic output: %q", out)
	}
	// Revision 1 comes back for its share (2 of 2 replicas rounded up),
	// revision 2 keeps one; no new revision is made.
	testutil.WaitForState(t, 2*time.Minute, "revision 1 back beside revision 2", func() (bool, string) {
		svc := s.service("default", "web")
		r := readyByRevision(svc)
		return r[1] == 2 && r[2] == 1 && svc.Status.Revision == 2 && len(svc.Status.Traffic) == 2, instancesOf(svc)
	})
	s.mustBerth("", "rollout", "status", "web", "--timeout", "1m")

	const n = 10000
	got := s.countRevisions(t, "web.default.berth.localhost", n)
	t.Logf("split 1=70 2=30 over %d requests: %v", n, got)
	if got["failed"] > 0 {
		t.Errorf("%d requests failed", got["failed"])
	}
	for rev, want := range map[string]float64{"1": 70, "2": 30} {
		if share := float64(got[rev]) * 100 / n; math.Abs(share-want) > 1 {
			t.Errorf("revision %s got %.2f%%, want %.0f%% ± 1", rev, share, want)
		}
	}

	t.Run("a tag reaches only its revision", func(t *testing.T) {
		got := s.countRevisions(t, "next-web.default.berth.localhost", 500)
		if got["2"] != 500 {
			t.Fatalf("next-web answered by %v, want revision 2 only", got)
		}
		// Even with no share at all.
		s.mustBerth("", "traffic", "web", "1=100", "2=0:next")
		testutil.WaitForState(t, time.Minute, "the split to reach the gateway", func() (bool, string) {
			got := s.countRevisions(t, "web.default.berth.localhost", 200)
			return got["1"] == 200, fmt.Sprint(got)
		})
		got = s.countRevisions(t, "next-web.default.berth.localhost", 200)
		if got["2"] != 200 {
			t.Fatalf("next-web at 0%% answered by %v, want revision 2 only", got)
		}
		out := s.mustBerth("", "traffic", "web")
		if !strings.Contains(out, "next-web.default") || !strings.Contains(out, "100%") {
			t.Fatalf("traffic shows:\n%s", out)
		}
	})

	t.Run("latest=100 gives everything back to the latest", func(t *testing.T) {
		s.mustBerth("", "traffic", "web", "latest=100")
		testutil.WaitForState(t, 2*time.Minute, "revision 1 gone", func() (bool, string) {
			svc := s.service("default", "web")
			r := readyByRevision(svc)
			return r[1] == 0 && r[2] == 2 && len(svc.Status.Instances) == 2, instancesOf(svc)
		})
		got := s.countRevisions(t, "web.default.berth.localhost", 200)
		if got["2"] != 200 {
			t.Fatalf("after latest=100: %v", got)
		}
	})
}

const canaryService = `apiVersion: berth.dev/v1
kind: Service
metadata:
  name: shop
spec:
  image: %s
  replicas: 2
  port: 8080
  env:
    - {name: FAIL_PERCENT, value: "%d"}
  readinessProbe:
    httpGet: {path: /ready}
    periodSeconds: 1
  terminationGracePeriodSeconds: 2
  strategy:
    maxSurge: 1
    maxUnavailable: 0
    canary:
      steps:
        - {percent: 10, pause: 2s}
        - {percent: 50, pause: 2s}
      analysis:
        maxErrorRate: 0.05
        maxP99Latency: 2s
        minRequests: 20
        interval: 200ms
`

// load sends requests to host through the gateway until stopped, and
// counts the answers: by revision for a 200, "app-500" for a failure the
// workload itself answered, "code-N" or "error" for anything else.
type revisionLoad struct {
	mu     sync.Mutex
	counts map[string]int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func (s *server) startLoad(host string, workers int) *revisionLoad {
	l := &revisionLoad{counts: map[string]int{}, stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				code, body, err := s.gatewayGet(host, "/")
				key := ""
				switch {
				case err != nil:
					key = "error"
				case code == http.StatusOK:
					var r struct{ Revision string }
					json.Unmarshal([]byte(body), &r)
					key = r.Revision
				case code == http.StatusInternalServerError && strings.Contains(body, "FAIL_PERCENT"):
					key = "app-500"
				default:
					key = fmt.Sprintf("code-%d", code)
				}
				l.mu.Lock()
				l.counts[key]++
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// take returns the counts so far and starts counting afresh.
func (l *revisionLoad) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	l.counts = map[string]int{}
	return c
}

func (l *revisionLoad) end() map[string]int {
	close(l.stop)
	l.wg.Wait()
	return l.take()
}

func TestCanary(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "image", "import", imageV2)
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "v1.yaml", fmt.Sprintf(canaryService, echoV1, 0)), "--wait", "--timeout", "2m")

	l := s.startLoad("shop.default.berth.localhost", 4)
	defer func() {
		if l != nil {
			l.end()
		}
	}()

	t.Run("a healthy canary is promoted through every step", func(t *testing.T) {
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "v2.yaml", fmt.Sprintf(canaryService, echoV2, 0)))
		testutil.WaitForState(t, 3*time.Minute, "the canary of revision 2 promoted", func() (bool, string) {
			svc := s.service("default", "shop")
			c := svc.Status.Canary
			return c != nil && c.Revision == 2 && c.Phase == v1.CanaryPromoted, fmt.Sprintf("%+v %s", c, instancesOf(svc))
		})
		s.mustBerth("", "rollout", "status", "shop", "--timeout", "2m")
		testutil.WaitForState(t, time.Minute, "revision 1 drained", func() (bool, string) {
			svc := s.service("default", "shop")
			r := readyByRevision(svc)
			return r[1] == 0 && r[2] == 2 && len(svc.Status.Instances) == 2, instancesOf(svc)
		})
		got := l.take()
		t.Logf("answers during the healthy canary: %v", got)
		if got["1"] == 0 || got["2"] == 0 {
			t.Errorf("both revisions should have answered: %v", got)
		}
		for k, n := range got {
			if k != "1" && k != "2" {
				t.Errorf("%d requests answered %s", n, k)
			}
		}
		out := s.mustBerth("", "describe", "service", "shop")
		for _, want := range []string{"CanaryStarted", "CanaryStep", "CanaryPromoted"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe lacks the event %s:\n%s", want, out)
			}
		}
	})

	t.Run("a canary failing 20% of requests rolls itself back", func(t *testing.T) {
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "v3.yaml", fmt.Sprintf(canaryService, echoV1, 20)))
		testutil.WaitForState(t, 3*time.Minute, "the canary of revision 3 rolled back", func() (bool, string) {
			svc := s.service("default", "shop")
			c := svc.Status.Canary
			return c != nil && c.Revision == 3 && c.Phase == v1.CanaryRolledBack, fmt.Sprintf("%+v %s", c, instancesOf(svc))
		})
		svc := s.service("default", "shop")
		if c := svc.Status.Canary; c.Step != 0 || !strings.Contains(c.Message, "error rate") {
			t.Errorf("rolled back at step %d: %q; want the first step, for its error rate", c.Step, c.Message)
		}
		_, stderr, code := s.berth("", "rollout", "status", "shop", "--timeout", "30s")
		if code == 0 || !strings.Contains(stderr, "rolled back") {
			t.Errorf("rollout status of a rolled-back canary: exit %d, %s", code, stderr)
		}
		testutil.WaitForState(t, time.Minute, "the canary's instances gone", func() (bool, string) {
			svc := s.service("default", "shop")
			r := readyByRevision(svc)
			return r[3] == 0 && r[2] == 2 && len(svc.Status.Instances) == 2, instancesOf(svc)
		})
		during := l.take()
		t.Logf("answers during the failing canary: %v", during)
		// Failures only from the canary itself, within its 10% share.
		total := 0
		for k, n := range during {
			total += n
			if k != "2" && k != "3" && k != "app-500" {
				t.Errorf("%d requests answered %s", n, k)
			}
		}
		if f := during["app-500"]; f == 0 || f > total/10 {
			t.Errorf("%d of %d requests failed; want some, and no more than the canary's 10%% share", f, total)
		}
		// Then everything is the stable revision's, and nothing fails.
		after := s.countRevisions(t, "shop.default.berth.localhost", 500)
		if after["2"] != 500 {
			t.Errorf("after the rollback: %v, want revision 2 only", after)
		}
		out := s.mustBerth("", "describe", "service", "shop")
		if !strings.Contains(out, "CanaryRolledBack") {
			t.Errorf("describe lacks the rollback event:\n%s", out)
		}
	})

	t.Run("a canary aborted by hand", func(t *testing.T) {
		// A healthy template again, but the canary is stopped by hand at
		// its first step.
		s.mustBerth("", "apply", "-f", writeFile(t, dir, "v4.yaml", fmt.Sprintf(canaryService, echoV2, 1)))
		testutil.WaitForState(t, time.Minute, "the canary of revision 4 started", func() (bool, string) {
			c := s.service("default", "shop").Status.Canary
			return c != nil && c.Revision == 4 && c.Phase == v1.CanaryProgressing, fmt.Sprintf("%+v", c)
		})
		// In progress, the canary has a host of its own.
		testutil.WaitForState(t, time.Minute, "canary-shop to answer from revision 4", func() (bool, string) {
			got := s.countRevisions(t, "canary-shop.default.berth.localhost", 20)
			return got["4"] >= 19 && got["1"]+got["2"] == 0, fmt.Sprint(got)
		})
		s.mustBerth("", "rollout", "abort", "shop")
		testutil.WaitForState(t, time.Minute, "revision 4 aborted and gone", func() (bool, string) {
			svc := s.service("default", "shop")
			r := readyByRevision(svc)
			return svc.Status.Canary.Phase == v1.CanaryAborted && r[4] == 0 && r[2] == 2 && len(svc.Status.Instances) == 2, instancesOf(svc)
		})
		_, stderr, code := s.berth("", "rollout", "promote", "shop")
		if code == 0 || !strings.Contains(stderr, "no canary in progress") {
			t.Errorf("promote after an abort: exit %d, %s", code, stderr)
		}
	})
	got := l.end()
	l = nil
	for k, n := range got {
		if k != "2" && k != "4" && k != "app-500" {
			t.Errorf("%d requests answered %s at the end", n, k)
		}
	}
}

const canaryFunction = `apiVersion: berth.dev/v1
kind: Function
metadata: {name: pay}
spec:
  image: %s
  concurrency: 4
  env:
    - {name: FAIL_PERCENT, value: "%d"}
  scale: {max: 3, idleTimeout: 30s}
  timeout: 30s
  strategy:
    canary:
      steps:
        - {percent: 20, pause: 2s}
        - {percent: 60, pause: 2s}
      analysis: {maxErrorRate: 0.05, minRequests: 20, interval: 200ms}
`

func TestFunctionCanaryFromZero(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	s.mustBerth("", "image", "import", imageV1)
	s.mustBerth("", "image", "import", imageV2)
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "v1.yaml", fmt.Sprintf(canaryFunction, echoV1, 0)))
	testutil.WaitForState(t, time.Minute, "revision 1 at zero", func() (bool, string) {
		fn := s.function("default", "pay")
		return fn.Status.Revision == 1 && fn.Status.ReadyInstances == 0, fnState(fn)
	})
	// The bad revision is applied while the function sleeps: its canary
	// starts at zero and the first request wakes both revisions.
	s.mustBerth("", "apply", "-f", writeFile(t, dir, "v2.yaml", fmt.Sprintf(canaryFunction, echoV2, 20)))
	testutil.WaitForState(t, time.Minute, "the canary of revision 2 started", func() (bool, string) {
		fn := s.function("default", "pay")
		c := fn.Status.Canary
		return c != nil && c.Revision == 2 && c.Phase == v1.CanaryProgressing, fnState(fn)
	})
	l := s.startLoad("pay.default.berth.localhost", 4)
	testutil.WaitForState(t, 3*time.Minute, "the canary of revision 2 rolled back", func() (bool, string) {
		fn := s.function("default", "pay")
		c := fn.Status.Canary
		return c != nil && c.Phase == v1.CanaryRolledBack, fmt.Sprintf("%+v %s", c, fnState(fn))
	})
	testutil.WaitForState(t, time.Minute, "revision 2's instances gone", func() (bool, string) {
		fn := s.function("default", "pay")
		for _, i := range fn.Status.Instances {
			if i.Revision == 2 && i.Phase != v1.PhaseTerminating {
				return false, fnState(fn)
			}
		}
		return true, fnState(fn)
	})
	during := l.take()
	t.Logf("answers during the function's canary: %v", during)
	total := 0
	for k, n := range during {
		total += n
		if k != "1" && k != "2" && k != "app-500" {
			t.Errorf("%d requests answered %s", n, k)
		}
	}
	if f := during["app-500"]; f == 0 || f > total/5 {
		t.Errorf("%d of %d requests failed; want some, and no more than the canary's 20%% share", f, total)
	}
	l.end()
	if after := s.countRevisions(t, "pay.default.berth.localhost", 300); after["1"] != 300 {
		t.Errorf("after the rollback: %v, want revision 1 only", after)
	}
}
