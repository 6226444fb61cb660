package activator

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/telemetry/tracing"
	"berth.dev/berth/internal/testutil"
)

// A request to a function at zero is held by the real activator while a
// stand-in autoscaler brings an instance up; the wait is its own span
// under the request's span, with how long it took and how it ended.
func TestColdStartSpan(t *testing.T) {
	tr, err := tracing.New(tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "warm now") }))
	t.Cleanup(up.Close)
	gw := gateway.New(gateway.Config{TracerProvider: tr.TracerProvider()})
	fn := gateway.Target{Environment: "dev", Name: "resize", Kind: v1.KindFunction}
	var a *Activator
	a = New(Config{
		Table: gw, Instances: func(string, string) []v1.InstanceStatus { return nil }, TracerProvider: tr.TracerProvider(),
		Demand: func(env, name string) {
			// The instance is ready a little later, as after a real start.
			go func() {
				time.Sleep(30 * time.Millisecond)
				ready := fn
				ready.Endpoints = []gateway.Endpoint{{ID: "resize-1", Address: up.Listener.Addr().String(), Revision: 1}}
				a.SetTargets([]gateway.Target{ready})
			}()
		},
	})
	gw.SetActivator(a)
	a.SetTargets([]gateway.Target{fn})
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	t.Cleanup(gw.CloseIdleConnections)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
	req.Host = "resize.dev.berth.localhost"
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "warm now" {
		t.Fatalf("status %d body %q", res.StatusCode, body)
	}

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
