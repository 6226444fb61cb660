package controller

import (
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
)

// sample is gateway readings of n requests, errs failed, all answered
// within lat.
func sample(n, errs int64, lat time.Duration) gateway.RevisionStats {
	s := gateway.RevisionStats{Requests: n, Errors: errs}
	// Buckets as the gateway fills them: find lat's by reading the
	// quantile of a one-bucket histogram.
	for i := 0; ; i++ {
		b := make([]int64, i+1)
		b[i] = n
		if (gateway.RevisionStats{Buckets: b}).Quantile(1) >= lat {
			s.Buckets = b
			return s
		}
	}
}

func TestJudge(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	cases := []struct {
		name           string
		a              v1.CanaryAnalysis
		canary, stable gateway.RevisionStats
		breach         string
		enough         bool
	}{
		{"too few requests to judge, even all failing", v1.CanaryAnalysis{MaxErrorRate: f(0.05)}, sample(19, 19, time.Millisecond), sample(100, 0, time.Millisecond), "", false},
		{"healthy", v1.CanaryAnalysis{MaxErrorRate: f(0.05), MaxP99Latency: "500ms"}, sample(100, 2, 10*time.Millisecond), sample(100, 0, time.Millisecond), "", true},
		{"absolute error rate", v1.CanaryAnalysis{MaxErrorRate: f(0.05)}, sample(100, 20, time.Millisecond), sample(100, 0, time.Millisecond), "error rate 20.0% (20 of 100 requests) is above the limit of 5.0%", true},
		{"error rate relative to stable", v1.CanaryAnalysis{MaxErrorRateIncrease: f(0.02)}, sample(100, 10, time.Millisecond), sample(100, 5, time.Millisecond), "5.0 points above the stable revision's 5.0%", true},
		{"as bad as stable is no breach", v1.CanaryAnalysis{MaxErrorRateIncrease: f(0.02)}, sample(100, 6, time.Millisecond), sample(100, 5, time.Millisecond), "", true},
		{"relative limits need a known stable", v1.CanaryAnalysis{MaxErrorRateIncrease: f(0.02), MaxP99LatencyRatio: f(2)}, sample(100, 50, time.Second), sample(3, 0, time.Millisecond), "", true},
		{"absolute p99", v1.CanaryAnalysis{MaxP99Latency: "100ms"}, sample(100, 0, 300*time.Millisecond), sample(100, 0, time.Millisecond), "p99 latency", true},
		{"p99 relative to stable", v1.CanaryAnalysis{MaxP99LatencyRatio: f(2)}, sample(100, 0, 100*time.Millisecond), sample(100, 0, 10*time.Millisecond), "times the stable revision's", true},
		{"min requests configurable", v1.CanaryAnalysis{MinRequests: 5, MaxErrorRate: f(0.1)}, sample(5, 1, time.Millisecond), gateway.RevisionStats{}, "error rate 20.0%", true},
	}
	for _, tc := range cases {
		breach, enough := judge(tc.a, tc.canary, tc.stable)
		if enough != tc.enough || (tc.breach == "") != (breach == "") || !strings.Contains(breach, tc.breach) {
			t.Errorf("%s: breach %q enough %v, want %q %v", tc.name, breach, enough, tc.breach, tc.enough)
		}
	}
}

func TestCanaryAt(t *testing.T) {
	strategy := &v1.Canary{Steps: []v1.CanaryStep{{Percent: 10}, {Percent: 50}}}
	all := func(int64) bool { return true }
	now := time.Unix(1000, 0)

	if c, _ := canaryAt(strategy, nil, nil, 0, 1, all, now); c != nil {
		t.Errorf("a first revision started a canary: %+v", c)
	}
	c, started := canaryAt(strategy, nil, nil, 1, 2, all, now)
	if !started || c.Revision != 2 || c.Stable != 1 || c.Percent != 10 || c.Phase != v1.CanaryProgressing {
		t.Fatalf("a new revision: %+v started %v", c, started)
	}
	if again, started := canaryAt(strategy, nil, c, 2, 2, all, now); again != c || started {
		t.Errorf("the same revision restarted its canary")
	}
	// Changed mid-way: the new canary is judged against the old stable.
	c3, started := canaryAt(strategy, nil, c, 2, 3, all, now)
	if !started || c3.Revision != 3 || c3.Stable != 1 {
		t.Errorf("changed mid-way: %+v", c3)
	}
	// After a promotion, the promoted revision is stable.
	promoted := *c
	promoted.Phase = v1.CanaryPromoted
	if c4, _ := canaryAt(strategy, nil, &promoted, 2, 4, all, now); c4 == nil || c4.Stable != 2 {
		t.Errorf("after a promotion: %+v", c4)
	}
	// A hand-written split, a strategy removed or a stable revision gone:
	// no canary.
	if c, _ := canaryAt(strategy, []v1.TrafficTarget{{LatestRevision: true, Percent: 100}}, c, 2, 3, all, now); c != nil {
		t.Errorf("with spec.traffic: %+v", c)
	}
	if c, _ := canaryAt(nil, nil, c, 2, 3, all, now); c != nil {
		t.Errorf("without a strategy: %+v", c)
	}
	if c, _ := canaryAt(strategy, nil, nil, 1, 2, func(int64) bool { return false }, now); c != nil {
		t.Errorf("with the stable revision gone: %+v", c)
	}

	// The split each phase asks for.
	if tr := canaryTraffic(c); len(tr) != 2 || tr[0].Revision != 1 || tr[0].Percent != 90 || !tr[1].LatestRevision || tr[1].Percent != 10 {
		t.Errorf("progressing: %v", tr)
	}
	back := *c
	back.Phase = v1.CanaryRolledBack
	if tr := canaryTraffic(&back); tr[0].Percent != 100 || tr[1].Percent != 0 {
		t.Errorf("rolled back: %v", tr)
	}
	if tr := canaryTraffic(&promoted); tr != nil {
		t.Errorf("promoted: %v", tr)
	}
}
