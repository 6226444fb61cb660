package activator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/testutil"
)

// A request to a function at zero is held by the real activator while a
// stand-in autoscaler brings an instance up; the wait is its own span
// under the request's span, with how long it took and how it ended.
func TestColdStartSpan(t *testing.T) {
	tr, _ := coldRequest(t, "4bf92f3577b34da6a3ce929d0e0e4736", nil, func(env, name string, ready func()) {
		// The instance is ready a little later, as after a real start.
		go func() {
			time.Sleep(30 * time.Millisecond)
			ready()
		}()
	})

	got := testutil.WaitForValue(t, 5*time.Second, "the trace to have 3 spans", func() (v1.Trace, bool) {
		got, err := tr.Trace("4bf92f3577b34da6a3ce929d0e0e4736")
		return got, err == nil && len(got.Spans) == 3
	})
	byName := map[string]v1.Span{}
	for _, sp := range got.Spans {
		byName[sp.Name] = sp
	}
	srvSpan, cold, upstream := byName["gateway resize.dev"], byName["cold start"], byName["upstream resize.dev"]
	if cold.ParentID == "" || cold.ParentID != srvSpan.SpanID || upstream.ParentID != srvSpan.SpanID {
		t.Fatalf("want cold start and upstream under the request span; spans %+v", got.Spans)
	}
	if cold.Attributes[tracing.AttrOutcome] != "ready" || cold.Status == "error" {
		t.Errorf("cold start span %+v: want outcome ready", cold)
	}
	if w := cold.End.Sub(cold.Start); w < 25*time.Millisecond || cold.Attributes[tracing.AttrWaitMS] == "" {
		t.Errorf("cold start lasted %v (attrs %v); the instance took 30ms", w, cold.Attributes)
	}
	if cold.End.After(upstream.Start) {
		t.Errorf("cold start ends %v after the upstream call starts %v", cold.End, upstream.Start)
	}
}

// A cold start explains itself: the start record of the instance that
// answered splits the wait into its phases, as child spans of the cold
// start span, in the function's last cold start and in /metrics.
func TestColdStartPhases(t *testing.T) {
	insts := &instances{}
	tr, a := coldRequest(t, "5bf92f3577b34da6a3ce929d0e0e4736", insts.get, func(env, name string, ready func()) {
		// An instance from a standby: it begins 2 ms after the demand,
		// starts its task in 3 ms, is ready 4 ms later, and its readiness
		// reaches the table 2 ms after that.
		began := time.Now().Add(2 * time.Millisecond)
		start := &v1.StartPhases{FromStandby: true, BeganAt: began, StartMS: 3, InitMS: 4, ReadyAt: began.Add(7 * time.Millisecond)}
		go func() {
			time.Sleep(time.Until(start.ReadyAt.Add(2 * time.Millisecond)))
			insts.set(env, name, v1.InstanceStatus{Name: "resize-1", Ready: true, Phase: v1.PhaseRunning, Start: start})
			ready()
		}()
	})
	got := testutil.WaitForValue(t, 5*time.Second, "the trace to have 8 spans", func() (v1.Trace, bool) {
		got, err := tr.Trace("5bf92f3577b34da6a3ce929d0e0e4736")
		return got, err == nil && len(got.Spans) == 8
	})
	byName := map[string]v1.Span{}
	for _, sp := range got.Spans {
		byName[sp.Name] = sp
	}
	cold := byName["cold start"]
	var prev v1.Span
	for i, name := range v1.ColdStartPhases {
		sp, ok := byName[name]
		if !ok || sp.ParentID != cold.SpanID {
			t.Fatalf("phase %s: span %+v, want it under the cold start span %s", name, sp, cold.SpanID)
		}
		if sp.Start.Before(cold.Start) || sp.End.After(cold.End) || (i > 0 && !sp.Start.Equal(prev.End)) {
			t.Errorf("phase %s spans %v..%v: want it inside the cold start (%v..%v), right after %s (ended %v)",
				name, sp.Start, sp.End, cold.Start, cold.End, prev.Name, prev.End)
		}
		prev = sp
	}
	// The instance's own phases are as it recorded them.
	for name, want := range map[string]time.Duration{"sandbox": 0, "start": 3 * time.Millisecond, "init": 4 * time.Millisecond} {
		if d := byName[name].End.Sub(byName[name].Start); d != want {
			t.Errorf("phase %s lasted %v, the instance recorded %v", name, d, want)
		}
	}

	_, n, last := a.Stats("dev", "resize")
	if n != 1 || last == nil || len(last.Phases) != len(v1.ColdStartPhases) {
		t.Fatalf("stats: %d cold starts, last %+v; want 1 with %d phases", n, last, len(v1.ColdStartPhases))
	}
	sum := 0.0
	for _, p := range last.Phases {
		sum += p.MS
	}
	if diff := sum - last.DurationMS; diff > 0.01 || diff < -0.01 {
		t.Errorf("phases add up to %.3fms, the cold start took %.3fms", sum, last.DurationMS)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	phases := 0
	for _, mf := range mfs {
		if mf.GetName() == "berth_cold_start_phase_seconds" {
			for _, m := range mf.GetMetric() {
				if m.GetHistogram().GetSampleCount() == 1 {
					phases++
				}
			}
		}
	}
	if phases != len(v1.ColdStartPhases) {
		t.Errorf("berth_cold_start_phase_seconds has %d phases with one observation, want %d", phases, len(v1.ColdStartPhases))
	}
}

// coldRequest sends one traced request (trace traceID) through a real
// gateway to function dev/resize at zero, held by a real activator whose
// autoscaler stand-in calls demand; demand calls ready to give the table
// the instance's endpoint. It checks the answer and returns the tracing
// and the activator.
func coldRequest(t *testing.T, traceID string, insts func(env, name string) []v1.InstanceStatus,
	demand func(env, name string, ready func())) (*tracing.Tracing, *Activator) {
	t.Helper()
	tr, err := tracing.New(tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	if insts == nil {
		insts = func(string, string) []v1.InstanceStatus { return nil }
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "warm now") }))
	t.Cleanup(up.Close)
	gw := gateway.New(gateway.Config{TracerProvider: tr.TracerProvider()})
	fn := gateway.Target{Environment: "dev", Name: "resize", Kind: v1.KindFunction}
	var a *Activator
	a = New(Config{
		Table: gw, Instances: insts, TracerProvider: tr.TracerProvider(),
		Demand: func(env, name string) {
			demand(env, name, func() {
				ready := fn
				ready.Endpoints = []gateway.Endpoint{{ID: "resize-1", Address: up.Listener.Addr().String(), Revision: 1}}
				a.SetTargets([]gateway.Target{ready})
			})
		},
	})
	gw.SetActivator(a)
	a.SetTargets([]gateway.Target{fn})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	t.Cleanup(gw.CloseIdleConnections)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Host = "resize.dev.berth.localhost"
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "warm now" {
		t.Fatalf("status %d body %q", res.StatusCode, body)
	}
	return tr, a
}
