package metrics_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/activator"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/queue"
	"berth.dev/berth/internal/runtime"
	"berth.dev/berth/internal/store"
	"berth.dev/berth/internal/telemetry/metrics"
	"berth.dev/berth/internal/workflow/engine"
)

var update = flag.Bool("update", false, "rewrite testdata/series.golden from this run")

// okInvoker answers every async invocation 200, as a healthy function.
type okInvoker struct{}

func (okInvoker) Invoke(ctx context.Context, env, fn string, body []byte, h http.Header) (int, http.Header, []byte, error) {
	return http.StatusOK, nil, []byte("ok"), nil
}

// TestSeriesGolden builds the parts the way the composition root does,
// makes each of them produce every series it can, and checks the list of
// series (type, name and label names) /metrics serves against
// testdata/series.golden: dashboards and alerts are written against these
// names, so none may disappear or change labels unnoticed.
func TestSeriesGolden(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	create(t, st, &v1.Service{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
		Metadata: v1.ObjectMeta{Name: "web", Environment: "dev"},
		Spec:     v1.ServiceSpec{Replicas: ptr[int32](1), Template: v1.Template{Image: "x"}},
	})
	create(t, st, &v1.Function{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
		Metadata: v1.ObjectMeta{Name: "resize", Environment: "dev"},
		Spec:     v1.FunctionSpec{Template: v1.Template{Image: "y"}},
	})
	create(t, st, instance("dev", "web", v1.KindService, "web-a", 1, v1.PhaseRunning, true, 0))
	create(t, st, &v1.Workflow{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindWorkflow},
		Metadata: v1.ObjectMeta{Name: "order", Environment: "dev"},
		Spec:     v1.WorkflowSpec{Definition: json.RawMessage(`{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}`)},
	})

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	t.Cleanup(up.Close)
	upAddr := strings.TrimPrefix(up.URL, "http://")
	driver := stats{by: map[string]runtime.Stats{"dev.web-a": {CPUUsageNanos: 1e9, MemoryBytes: 1 << 20}}}

	p := buildParts(t, st, driver, upAddr)

	front := httptest.NewServer(p.gateway)
	t.Cleanup(front.Close)
	get := func(host string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/", nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := get("web.dev.berth.localhost"); code != 200 {
		t.Fatalf("GET web = %d", code)
	}
	// resize is at zero: the activator holds the request, the table gets
	// an endpoint, the request goes through: one cold start.
	if code := get("resize.dev.berth.localhost"); code != 200 {
		t.Fatalf("GET resize (cold) = %d", code)
	}
	get("nothing.dev.berth.localhost")

	id, err := p.queue.Enqueue(ctx, "dev", "resize", []byte("x"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		inv, err := p.queue.Get(ctx, "dev", id)
		return err == nil && inv.Status == v1.InvocationSucceeded
	})
	exec, err := p.engine.Start(ctx, "dev", "order", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := p.engine.Wait(wctx, "dev", exec.ID); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "series.golden")
	b, err := os.ReadFile(path)
	if err != nil && !*update {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSpace(string(b)), "\n")
	// Some counts land just after the event a test can wait for (an
	// execution's end is counted after its record is written): scrape
	// until every expected series is there, or the deadline.
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got = seriesOf(scrape(t, p.metrics))
		if *update || !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(got, w) }) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("series missing from /metrics: %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("series not in testdata/series.golden: %s (run with -update if it is new on purpose)", g)
		}
	}
}

// seriesOf lists each family as "TYPE NAME{LABEL,...}", the union of the
// label names of its samples, sorted.
func seriesOf(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for name, f := range fams {
		var labels []string
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		slices.Sort(labels)
		out = append(out, fmt.Sprintf("%s %s{%s}", strings.ToLower(f.GetType().String()), name, strings.Join(labels, ",")))
	}
	slices.Sort(out)
	return out
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// parts is what the golden test drives and scrapes.
type parts struct {
	metrics http.Handler
	gateway *gateway.Gateway
	queue   *queue.Queue
	engine  *engine.Engine
}

// buildParts wires the parts in the composition root's order: each is
// built with what it needs, then its collector is registered.
func buildParts(t *testing.T, st store.Store, driver runtime.StatsReader, upAddr string) parts {
	inv := storeInventory(t, st)
	m := metrics.New(metrics.Config{Inventory: func() metrics.Inventory { return inv }, Driver: driver})
	gw := gateway.New(gateway.Config{})
	q, err := queue.Open(t.Context(), queue.Config{Dir: t.TempDir(), Invoker: okInvoker{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	if err := q.SetFunctions([]queue.Function{{Environment: "dev", Name: "resize"}}); err != nil {
		t.Fatal(err)
	}
	web := gateway.Target{Environment: "dev", Name: "web", Kind: v1.KindService,
		Endpoints: []gateway.Endpoint{{ID: "web-a", Address: upAddr, Revision: 1}}}
	var act *activator.Activator
	act = activator.New(activator.Config{
		Table: gw, Instances: func(string, string) []v1.InstanceStatus { return nil },
		Demand: func(env, name string) {
			go act.SetTargets([]gateway.Target{web, {Environment: "dev", Name: "resize", Kind: v1.KindFunction,
				Endpoints: []gateway.Endpoint{{ID: "resize-a", Address: upAddr, Revision: 1}}}})
		},
	})
	gw.SetActivator(act)
	act.SetTargets([]gateway.Target{web, {Environment: "dev", Name: "resize", Kind: v1.KindFunction}})
	workflows := metrics.NewWorkflows()
	eng := engine.New(engine.Config{Store: st, Observer: workflows})
	if err := m.Register(gw.Collector(), act.Collector(), q.Collector(), workflows); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return parts{metrics: m.Handler(), gateway: gw, queue: q, engine: eng}
}

var _ engine.Observer = (*metrics.Workflows)(nil)
