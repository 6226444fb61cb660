package wasm

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"berth.dev/berth/internal/testutil"
)

// wasmGauge reads one of the host's metrics for function fn.
func wasmGauge(t *testing.T, h *Host, family, fn string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(h.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "workload" && l.GetValue() == fn {
					if m.Gauge != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// berth top's memory of a Wasm function is its running instances' memory:
// some while one runs, none after.
func TestMetricsMemoryOfRunningInstances(t *testing.T) {
	h := newHost(t, Config{})
	apply(t, h, "fn", goHandler(t), nil)
	done := make(chan answer)
	go func() { done <- call(t, h, "fn", "GET", "/sleep?d=1s", "") }()
	testutil.WaitForState(t, 10*time.Second, "one instance running, with memory", func() (bool, string) {
		running, mem := wasmGauge(t, h, "berth_wasm_instances_running", "fn"), wasmGauge(t, h, "berth_wasm_memory_bytes", "fn")
		return running == 1 && mem >= 1<<20, fmt.Sprintf("running %v, memory %v", running, mem)
	})
	if a := <-done; a.status != 200 {
		t.Fatalf("sleep: %d %q", a.status, a.body)
	}
	if mem, started := wasmGauge(t, h, "berth_wasm_memory_bytes", "fn"), wasmGauge(t, h, "berth_wasm_instances_started_total", "fn"); mem != 0 || started != 1 {
		t.Fatalf("after the request: memory %v, started %v; want 0 and 1", mem, started)
	}
}
