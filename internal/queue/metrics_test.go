package queue

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/testutil"
)

// samples gathers c: "family{label=value,...}" → value, for the counters
// and gauges it has.
func samples(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			k := f.GetName() + "{"
			for i, l := range m.Label {
				if i > 0 {
					k += ","
				}
				k += l.GetName() + "=" + l.GetValue()
			}
			k += "}"
			out[k] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

func TestCollectorCountsDepthAndOutcomes(t *testing.T) {
	inv := newFake()
	inv.failFirst["broken"] = -1
	gate := make(chan struct{})
	inv.gate["gated"] = gate
	q := openQueue(t, t.TempDir(), inv, nil)
	mustSet(t, q,
		Function{Environment: "dev", Name: "ok"},
		Function{Environment: "dev", Name: "broken", MaxRetries: 0},
		Function{Environment: "dev", Name: "gated"},
	)
	ctx := context.Background()
	ok, err := q.Enqueue(ctx, "dev", "ok", []byte("a"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := q.Enqueue(ctx, "dev", "broken", []byte("b"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := q.Enqueue(ctx, "dev", "gated", []byte("c"), nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, q, "dev", ok, v1.InvocationSucceeded, 10*time.Second)
	waitStatus(t, q, "dev", bad, v1.InvocationFailed, 10*time.Second)

	got := samples(t, q.Collector())
	for k, want := range map[string]float64{
		"berth_async_invocations_total{environment=dev,function=ok,outcome=succeeded}":  1,
		"berth_async_invocations_total{environment=dev,function=broken,outcome=failed}": 1,
		"berth_queue_depth{environment=dev,function=gated}":                             3,
		"berth_queue_depth{environment=dev,function=ok}":                                0,
		"berth_queue_depth{environment=dev,function=broken}":                            0,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], want, got)
		}
	}
	close(gate)
	testutil.WaitFor(t, 10*time.Second, "gated depth 0", func() bool {
		return samples(t, q.Collector())["berth_queue_depth{environment=dev,function=gated}"] == 0
	})
}
