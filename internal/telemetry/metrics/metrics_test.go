package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1 "berth.dev/berth/api/v1"
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

// inventory is a platform's caches as the instance gauges read them: a
// test changes it between scrapes.
type inventory struct {
	mu  sync.Mutex
	inv metrics.Inventory
}

func (i *inventory) get() metrics.Inventory {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.inv
}

func (i *inventory) set(inv metrics.Inventory) {
	i.mu.Lock()
	i.inv = inv
	i.mu.Unlock()
}

// storeInventory lists st once, as the composition root's caches hold it.
func storeInventory(t *testing.T, st store.Store) metrics.Inventory {
	t.Helper()
	ctx := t.Context()
	svcs, _, err := store.List[v1.Service](ctx, st, v1.KindService, "")
	if err != nil {
		t.Fatal(err)
	}
	fns, _, err := store.List[v1.Function](ctx, st, v1.KindFunction, "")
	if err != nil {
		t.Fatal(err)
	}
	insts, _, err := store.List[v1.Instance](ctx, st, v1.KindInstance, "")
	if err != nil {
		t.Fatal(err)
	}
	return metrics.Inventory{Services: svcs, Functions: fns, Instances: insts}
}

func TestInstanceGauges(t *testing.T) {
	st := openStore(t)
	create(t, st, &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: "web", Environment: "dev"},
		Spec:     v1.ServiceSpec{Replicas: ptr[int32](3), Template: v1.Template{Image: "x"}},
	})
	create(t, st, &v1.Function{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "resize", Environment: "dev"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "y"}},
		Status:   v1.FunctionStatus{Desired: 2},
	})
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
	inv := &inventory{inv: storeInventory(t, st)}
	m := metrics.New(metrics.Config{
		Inventory: inv.get,
		Driver: stats{by: map[string]runtime.Stats{
			"dev.web-a":    {CPUUsageNanos: 1_500_000_000, MemoryBytes: 10 << 20},
			"dev.web-b":    {CPUUsageNanos: 500_000_000, MemoryBytes: 20 << 20},
			"dev.resize-a": {CPUUsageNanos: 250_000_000, MemoryBytes: 5 << 20},
		}, slow: "dev.web-c"},
		ScrapeTimeout: 300 * time.Millisecond,
	})
	start := time.Now()
	fams := scrape(t, m.Handler())
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("scrape took %v with one instance not answering; the deadline is 300ms", d)
	}
	web := map[string]string{"environment": "dev", "workload": "web", "kind": "Service"}
	for _, c := range []struct {
		name string
		want float64
	}{{"berth_instances_desired", 3}, {"berth_instances_ready", 2}, {"berth_instances_running", 3}, {"berth_instance_restarts", 8}} {
		if got := num(t, fams, c.name, web); got != c.want {
			t.Errorf("%s{web} = %v, want %v", c.name, got, c.want)
		}
	}
	// Ready instances by revision: web-a and web-b run 4; web-c (5) is not
	// ready yet.
	if got := num(t, fams, "berth_revision_instances_ready", map[string]string{"workload": "web", "kind": "Service", "revision": "4"}); got != 2 {
		t.Errorf("web revision 4 ready = %v, want 2", got)
	}
	if _, ok := value(t, fams, "berth_revision_instances_ready", map[string]string{"workload": "web", "revision": "5"}); ok {
		t.Error("a revision with no ready instance has a sample")
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
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("the Go runtime's metrics are missing")
	}

	// Changes in the caches reach the next scrape: web-a is deleted,
	// web-c becomes ready.
	var a, c v1.Instance
	ctx := t.Context()
	if err := store.Get(ctx, st, store.Key{Kind: v1.KindInstance, Environment: "dev", Name: "web-a"}, &a); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, st, &a); err != nil {
		t.Fatal(err)
	}
	if err := store.Get(ctx, st, store.Key{Kind: v1.KindInstance, Environment: "dev", Name: "web-c"}, &c); err != nil {
		t.Fatal(err)
	}
	c.Status.Phase, c.Status.Ready = v1.PhaseRunning, true
	if err := store.Update(ctx, st, &c); err != nil {
		t.Fatal(err)
	}
	inv.set(storeInventory(t, st))
	fams = scrape(t, m.Handler())
	if got, want := [3]float64{num(t, fams, "berth_instances_ready", web), num(t, fams, "berth_instances_running", web), num(t, fams, "berth_instance_restarts", web)}, [3]float64{2, 2, 8}; got != want {
		t.Errorf("after the change ready, running, restarts = %v, want %v", got, want)
	}
	for rev, want := range map[string]float64{"4": 1, "5": 1} {
		if got := num(t, fams, "berth_revision_instances_ready", map[string]string{"workload": "web", "revision": rev}); got != want {
			t.Errorf("after the change web revision %s ready = %v, want %v", rev, got, want)
		}
	}
}

func TestWorkflowCounts(t *testing.T) {
	w := metrics.NewWorkflows()
	m := metrics.New(metrics.Config{})
	if err := m.Register(w); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		w.ExecutionStarted("dev", "order")
	}
	for range 7 {
		w.StateEntered("dev", "order")
	}
	w.ExecutionFinished("dev", "order", v1.ExecutionSucceeded)
	w.ExecutionLeft("dev", "order")
	w.ExecutionStarted("dev", "refund")

	fams := scrape(t, m.Handler())
	order := map[string]string{"environment": "dev", "workflow": "order"}
	if got := num(t, fams, "berth_workflow_executions_running", order); got != 1 {
		t.Errorf("running = %v, want 1 (3 started, 1 finished, 1 left)", got)
	}
	if got := num(t, fams, "berth_workflow_executions_total", map[string]string{"workflow": "order", "status": v1.ExecutionSucceeded}); got != 1 {
		t.Errorf("succeeded = %v, want 1", got)
	}
	if got := num(t, fams, "berth_workflow_transitions_total", order); got != 7 {
		t.Errorf("transitions = %v, want 7", got)
	}
	if got := num(t, fams, "berth_workflow_transitions_total", map[string]string{"workflow": "refund"}); got != 0 {
		t.Errorf("refund transitions = %v, want a 0 sample from its first execution on", got)
	}
}

// envSeries is a collector with series in two environments and one in
// none.
type envSeries struct{}

var (
	descEnv    = prometheus.NewDesc("test_requests_total", "x", []string{"environment", "workload"}, nil)
	descGlobal = prometheus.NewDesc("test_platform_total", "x", nil, nil)
)

func (envSeries) Describe(ch chan<- *prometheus.Desc) { ch <- descEnv; ch <- descGlobal }
func (envSeries) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descEnv, prometheus.CounterValue, 1, "dev", "web")
	ch <- prometheus.MustNewConstMetric(descEnv, prometheus.CounterValue, 2, "prod", "web")
	ch <- prometheus.MustNewConstMetric(descGlobal, prometheus.CounterValue, 3)
}

func TestServeMetricsKeepsTheVisibleEnvironments(t *testing.T) {
	m := metrics.New(metrics.Config{})
	if err := m.Register(envSeries{}); err != nil {
		t.Fatal(err)
	}
	serve := func(visible func(string) bool) map[string]*dto.MetricFamily {
		return scrape(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.ServeMetrics(w, r, visible) }))
	}
	all := serve(nil)
	if len(all["test_requests_total"].GetMetric()) != 2 || all["test_platform_total"] == nil || all["go_goroutines"] == nil {
		t.Errorf("unfiltered scrape lacks series: %v", all)
	}
	dev := serve(func(env string) bool { return env == "dev" })
	if got := dev["test_requests_total"].GetMetric(); len(got) != 1 || num(t, dev, "test_requests_total", map[string]string{"environment": "dev"}) != 1 {
		t.Errorf("dev sees %v, want only dev's sample", got)
	}
	for name := range dev {
		if name != "test_requests_total" {
			t.Errorf("dev sees %s, which belongs to no environment", name)
		}
	}
}
