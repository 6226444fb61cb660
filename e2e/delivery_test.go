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
