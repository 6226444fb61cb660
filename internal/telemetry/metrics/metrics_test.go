package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/store/bolt"
	"berth.dev/berth/internal/telemetry/metrics"
)

// stats is a runtime.StatsReader over a fixed table; one container is
// slow, to prove a scrape does not wait for it past its deadline.
type stats struct {
	by   map[string]runtime.Stats
	slow string
}

func (s stats) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	if id == s.slow {
		<-ctx.Done()
		return runtime.Stats{}, ctx.Err()
	}
	st, ok := s.by[id]
	if !ok {
		return runtime.Stats{}, v1.NotFound("container %s", id)
	}
	return st, nil
}

type coldStarts map[string]*v1.ColdStart

func (c coldStarts) Stats(env, name string) (int, int64, *v1.ColdStart) {
	if l := c[env+"/"+name]; l != nil {
		return 1, 3, l
	}
	return 0, 0, nil
}

type depths map[string]int

func (d depths) Depth(env, fn string) int { return d[env+"/"+fn] }

type workflows []metrics.WorkflowCount

func (w workflows) WorkflowCounts() []metrics.WorkflowCount { return w }

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func create(t *testing.T, s store.Store, obj v1.Object) {
	t.Helper()
	if err := store.Create(t.Context(), s, obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetMetadata().Name, err)
	}
}

func instance(env, owner, kind, name string, rev int64, phase string, ready bool, restarts int32) *v1.Instance {
	return &v1.Instance{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindInstance},
		Metadata: v1.ObjectMeta{Name: name, Environment: env},
		Spec:     v1.InstanceSpec{Owner: owner, OwnerKind: kind, Revision: rev},
		Status:   v1.InstanceStatus{Name: name, Revision: rev, Phase: phase, Ready: ready, Restarts: restarts},
	}
}

func ptr[T any](v T) *T { return &v }

// scrape GETs /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) (*dto.Metric, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return nil, false
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
		return m, true
	}
	return nil, false
}

func num(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m, ok := value(t, fams, name, labels)
	if !ok {
		t.Fatalf("no %s%v in the scrape", name, labels)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s%v is neither a counter nor a gauge", name, labels)
	return 0
}

func TestScrapeCountsRequestsAndStoreState(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()

	create(t, st, &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: "web", Environment: "dev"},
		Spec:     v1.ServiceSpec{Replicas: ptr[int32](3), Template: v1.Template{Image: "x"}},
	})
	fn := &v1.Function{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "resize", Environment: "dev"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "y"}},
		Status:   v1.FunctionStatus{Desired: 2},
	}
	create(t, st, fn)
	for _, i := range []*v1.Instance{
		instance("dev", "web", v1.KindService, "web-a", 4, v1.PhaseRunning, true, 0),
		instance("dev", "web", v1.KindService, "web-b", 4, v1.PhaseRunning, true, 2),
		instance("dev", "web", v1.KindService, "web-c", 5, v1.PhaseStarting, false, 1),
		instance("dev", "web", v1.KindService, "web-d", 3, v1.PhaseBackoff, false, 5),
		instance("dev", "resize", v1.KindFunction, "resize-a", 1, v1.PhaseRunning, true, 0),
		// An instance whose owner is gone counts nowhere.
		instance("dev", "gone", v1.KindService, "gone-a", 1, v1.PhaseRunning, true, 0),
	} {
		create(t, st, i)
	}

	var hits sync.Map
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.URL.Path, new(int))
		*n.(*int)++
		if r.URL.Path == "/fail" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	t.Cleanup(up.Close)

	// The order the composition root builds them in.
	m := metrics.New(metrics.Config{
		Store: st,
		Driver: stats{by: map[string]runtime.Stats{
			"dev.web-a":    {CPUUsageNanos: 1_500_000_000, MemoryBytes: 10 << 20},
			"dev.web-b":    {CPUUsageNanos: 500_000_000, MemoryBytes: 20 << 20},
			"dev.resize-a": {CPUUsageNanos: 250_000_000, MemoryBytes: 5 << 20},
		}, slow: "dev.web-c"},
		Queue: depths{"dev/resize": 7},
		Workflows: workflows{{Environment: "dev", Workflow: "order", Running: 2,
			Finished: map[string]int64{"Succeeded": 5, "Failed": 1}, Transitions: 40}},
		ScrapeTimeout: 300 * time.Millisecond,
	})
	gw := gateway.New(gateway.Config{Observer: m.Observer()})
	m.SetGateway(gw)
	upAddr := strings.TrimPrefix(up.URL, "http://")
	m.SetColdStarts(coldStarts{"dev/resize": {At: time.Unix(100, 0), DurationMS: 750}})
	gw.SetTargets([]gateway.Target{
		{Environment: "dev", Name: "web", Kind: v1.KindService, Endpoints: []gateway.Endpoint{{ID: "web-a", Address: upAddr, Revision: 4}}},
		{Environment: "dev", Name: "resize", Kind: v1.KindFunction},
	})
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)

	get := func(host, path string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+path, nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for range 5 {
		if code := get("web.dev.berth.localhost", "/"); code != 200 {
			t.Fatalf("GET web = %d", code)
		}
	}
	for range 2 {
		get("web.dev.berth.localhost", "/fail")
	}
	// A function without endpoints and no activator: 503, no revision.
	get("resize.dev.berth.localhost", "/")
	get("nothing.dev.berth.localhost", "/")

	start := time.Now()
	fams := scrape(t, m.Handler())
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("scrape took %v with one instance not answering; the deadline is 300ms", d)
	}

	web := map[string]string{"environment": "dev", "workload": "web"}
	with := func(base map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	if got := num(t, fams, "berth_requests_total", with(web, "code", "200", "revision", "4", "kind", "Service")); got != 5 {
		t.Errorf("web 200s = %v, want 5", got)
	}
	if got := num(t, fams, "berth_requests_total", with(web, "code", "500", "revision", "4")); got != 2 {
		t.Errorf("web 500s = %v, want 2", got)
	}
	if got := num(t, fams, "berth_requests_total", map[string]string{"workload": "resize", "code": "503", "revision": "", "kind": "Function"}); got != 1 {
		t.Errorf("resize 503s = %v, want 1", got)
	}
	if got := num(t, fams, "berth_unrouted_requests_total", nil); got != 1 {
		t.Errorf("unrouted = %v, want 1", got)
	}
	h, ok := value(t, fams, "berth_request_duration_seconds", web)
	if !ok || h.Histogram == nil || h.Histogram.GetSampleCount() != 7 || len(h.Histogram.Bucket) == 0 {
		t.Errorf("web latency histogram = %v, want 7 samples in buckets", h)
	}
	if got := num(t, fams, "berth_requests_in_flight", web); got != 0 {
		t.Errorf("in flight after all answers = %v, want 0", got)
	}

	for _, c := range []struct {
		name string
		want float64
	}{{"berth_instances_desired", 3}, {"berth_instances_ready", 2}, {"berth_instances_running", 3}, {"berth_instance_restarts", 8}} {
		if got := num(t, fams, c.name, with(web, "kind", "Service")); got != c.want {
			t.Errorf("%s{web} = %v, want %v", c.name, got, c.want)
		}
	}
	resize := map[string]string{"environment": "dev", "workload": "resize", "kind": "Function"}
	if got := num(t, fams, "berth_instances_desired", resize); got != 2 {
		t.Errorf("resize desired = %v, want 2 (status.desired)", got)
	}
	if _, ok := value(t, fams, "berth_instances_ready", map[string]string{"workload": "gone"}); ok {
		t.Error("an instance of a deleted workload was counted")
	}
	if got := num(t, fams, "berth_instance_cpu_seconds_total", map[string]string{"instance": "web-a", "workload": "web"}); got != 1.5 {
		t.Errorf("web-a cpu = %v, want 1.5", got)
	}
	if got := num(t, fams, "berth_instance_memory_bytes", map[string]string{"instance": "web-b"}); got != 20<<20 {
		t.Errorf("web-b memory = %v", got)
	}
	if _, ok := value(t, fams, "berth_instance_memory_bytes", map[string]string{"instance": "web-c"}); ok {
		t.Error("the instance that did not answer in time has a memory sample")
	}
	if _, ok := value(t, fams, "berth_instance_memory_bytes", map[string]string{"instance": "web-d"}); ok {
		t.Error("an instance in backoff (no task) was asked for stats")
	}

	fnLabels := map[string]string{"environment": "dev", "function": "resize"}
	if got := num(t, fams, "berth_cold_starts_total", fnLabels); got != 3 {
		t.Errorf("cold starts = %v, want 3", got)
	}
	if got := num(t, fams, "berth_queue_depth", fnLabels); got != 7 {
		t.Errorf("queue depth = %v, want 7", got)
	}
	cs, ok := value(t, fams, "berth_cold_start_duration_seconds", fnLabels)
	if !ok || cs.Histogram.GetSampleCount() != 1 || cs.Histogram.GetSampleSum() != 0.75 {
		t.Errorf("cold start histogram = %v, want the one 750ms sample", cs)
	}
	wf := map[string]string{"environment": "dev", "workflow": "order"}
	if got := num(t, fams, "berth_workflow_executions_total", with(wf, "status", "Failed")); got != 1 {
		t.Errorf("failed executions = %v", got)
	}
	if got := num(t, fams, "berth_workflow_transitions_total", wf); got != 40 {
		t.Errorf("transitions = %v", got)
	}

	// A second scrape does not sample the same cold start again, and
	// async outcomes reported by the queue show up.
	m.AsyncOutcome("dev", "resize", metrics.OutcomeFailed)
	fams = scrape(t, m.Handler())
	if cs, _ := value(t, fams, "berth_cold_start_duration_seconds", fnLabels); cs.Histogram.GetSampleCount() != 1 {
		t.Errorf("cold start sampled twice: %d samples", cs.Histogram.GetSampleCount())
	}
	if got := num(t, fams, "berth_async_invocations_total", with(fnLabels, "outcome", "failed")); got != 1 {
		t.Errorf("failed async = %v", got)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("the Go runtime's metrics are missing")
	}
}
