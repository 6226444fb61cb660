package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/advisor"
	"berth.dev/berth/internal/apiserver"
	"berth.dev/berth/internal/history"
	"berth.dev/berth/internal/store/bolt"
)

// adviceHistory is a day of a service called every 20 minutes, as the
// history recorded it: one replica all day, 30 ms requests.
type adviceHistory struct{ minutes []history.Minute }

func newAdviceHistory(end time.Time) *adviceHistory {
	h := &adviceHistory{}
	start := end.Add(-24 * time.Hour)
	for i := range 24 * 60 {
		m := history.Minute{At: start.Add(time.Duration(i) * time.Minute), Kinds: history.RanAsService, Covered: 60,
			InstanceSeconds: 60, ReadySeconds: 60, InstancesMax: 1, CPUSeconds: 0.06, MemoryBytes: 8 << 20, MemoryMaxBytes: 8 << 20}
		if i%20 == 0 {
			m.Requests, m.Answered, m.BusySeconds, m.Active, m.InFlightMax = 1, 1, 0.03, 1<<17, 1
			m.P50, m.P90, m.P99 = 0.03, 0.03, 0.03
		}
		h.minutes = append(h.minutes, m)
	}
	return h
}

func (h *adviceHistory) Range(env, name string, from, to time.Time) ([]history.Minute, error) {
	if env != "default" || name != "thumbs" {
		return nil, nil
	}
	var out []history.Minute
	for _, m := range h.minutes {
		if !m.At.Before(from) && m.At.Before(to) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (h *adviceHistory) Image(string) (history.ImageStats, error) {
	return history.ImageStats{ColdStarts: 40, ColdStartSeconds: 0.8}, nil
}

type adviceWorkloads struct{}

func (adviceWorkloads) Workload(env, name string) (advisor.Workload, bool) {
	for _, w := range (adviceWorkloads{}).Workloads(env) {
		if w.Name == name {
			return w, true
		}
	}
	return advisor.Workload{}, false
}

func (adviceWorkloads) Workloads(env string) []advisor.Workload {
	if env != "default" {
		return nil
	}
	one := int32(1)
	svc := func(name string) advisor.Workload {
		return advisor.Workload{Kind: v1.KindService, Environment: "default", Name: name, ImageDigest: "sha256:0123456789abcdef",
			Service: &v1.Service{Metadata: v1.ObjectMeta{Name: name, Environment: "default"},
				Spec: v1.ServiceSpec{Replicas: &one, Template: v1.Template{Resources: v1.Resources{CPU: "500m", Memory: "256Mi"}}}}}
	}
	return []advisor.Workload{svc("thumbs"), svc("new")}
}

// adviceAPI is the real API server with the real advisor over a canned
// history.
func adviceAPI(t *testing.T) string {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "berth.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := apiserver.EnsureDefaultEnvironment(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	adv, err := advisor.New(advisor.Config{History: newAdviceHistory(testNow), Workloads: adviceWorkloads{}, Clock: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	api := apiserver.New(apiserver.Config{Store: st, Token: testToken, Advisor: adv,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() { st.Close() })
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAdviseGolden(t *testing.T) {
	isolateConfig(t)
	addr := adviceAPI(t)
	run := func(args ...string) result {
		t.Helper()
		return runCtx(context.Background(), t, addr, "", newSyncBuffer(), args...)
	}
	r := run("advise", "thumbs", "--since", "1d")
	mustSucceed(t, r)
	checkGolden(t, "advise", r.stdout)

	r = run("advise", "thumbs", "--since", "1d", "--chart")
	mustSucceed(t, r)
	if _, chart, _ := strings.Cut(r.stdout, "To switch:"); !strings.Contains(chart, "requests / 24m") {
		t.Errorf("chart:\n%s", r.stdout)
	}
	checkGolden(t, "advise_chart", r.stdout)

	r = run("advise", "--since", "1d")
	mustSucceed(t, r)
	checkGolden(t, "advise_list", r.stdout)

	r = run("advise", "thumbs", "--since", "1d", "-o", "json", "--concurrency", "2", "--idle-timeout", "5m")
	mustSucceed(t, r)
	var a v1.Advice
	if err := json.Unmarshal([]byte(r.stdout), &a); err != nil {
		t.Fatal(err)
	}
	if a.Other.Concurrency != 2 || a.Other.IdleTimeout != "5m0s" || a.Recommend != v1.KindFunction {
		t.Errorf("advice: %+v", a.Other)
	}
}

func TestAdviseBadInput(t *testing.T) {
	isolateConfig(t)
	addr := adviceAPI(t)
	prices := writeTemp(t, "prices.yaml", "function: {perRequest: 0.0000002, perGBSecond: -3}\nservice: {perVCPUHour: 0.04}\n")
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"advise", "nope"}, 5, `no Service or Function "nope" in environment "default"`},
		{[]string{"advise", "new"}, 7, "has 0s of recorded traffic history in the last 7d; advice needs at least 60 minutes"},
		{[]string{"advise", "thumbs", "--since", "0d"}, 2, "must be more than zero"},
		{[]string{"advise", "thumbs", "--since", "31d"}, 3, "more than the 30d of history kept"},
		{[]string{"advise", "thumbs", "--prices", prices}, 3, "function.perGBSecond is -3: a price must be a number of 0 or more; function.perVCPUHour is missing"},
		{[]string{"advise", "thumbs", "--concurrency", "0"}, 2, "--concurrency must be 1 or more"},
		{[]string{"advise", "--chart"}, 2, "--chart draws one workload"},
		{[]string{"advise", "thumbs", "-e", "nowhere"}, 5, `environment "nowhere" not found`},
	} {
		r := runCtx(context.Background(), t, addr, "", newSyncBuffer(), tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("berth %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.says)
		}
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
