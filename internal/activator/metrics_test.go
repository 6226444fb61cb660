package activator

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
)

// gather returns the samples of c by family name.
func gather(t *testing.T, c prometheus.Collector) map[string][]*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]*dto.Metric{}
	for _, f := range fams {
		out[f.GetName()] = f.Metric
	}
	return out
}

func TestCollectorCountsColdStarts(t *testing.T) {
	a, _, demands := setup(t, 0)
	done := make(chan error, 1)
	go func() { done <- a.Activate(context.Background(), "default", "fn") }()
	deadline := time.Now().Add(5 * time.Second)
	for demands.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no demand signalled")
		}
		time.Sleep(time.Millisecond)
	}
	held := gather(t, a.Collector())["berth_cold_start_waiting_requests"]
	if len(held) != 1 || held[0].GetGauge().GetValue() != 1 {
		t.Fatalf("waiting requests while one is held = %v, want fn: 1 (functions only)", held)
	}
	a.SetTargets([]gateway.Target{{Environment: "default", Name: "fn", Kind: v1.KindFunction,
		Endpoints: []gateway.Endpoint{{ID: "fn-1", Address: "127.0.0.1:1"}}}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	fams := gather(t, a.Collector())
	if c := fams["berth_cold_starts_total"]; len(c) != 1 || c[0].GetCounter().GetValue() != 1 {
		t.Errorf("cold starts = %v, want 1", c)
	}
	if h := fams["berth_cold_start_waiting_requests"]; len(h) != 1 || h[0].GetGauge().GetValue() != 0 {
		t.Errorf("waiting requests after = %v, want 0", h)
	}
	if h := fams["berth_cold_start_duration_seconds"]; len(h) != 1 || h[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("cold start durations = %v, want one sample", h)
	}
}
