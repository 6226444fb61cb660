package wasm

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	wasmLabels      = []string{"environment", "workload"}
	descWasmRunning = prometheus.NewDesc("berth_wasm_instances_running",
		"Instances of a Wasm function running now (each is one request).", wasmLabels, nil)
	descWasmStarted = prometheus.NewDesc("berth_wasm_instances_started_total",
		"Instances of a Wasm function started: its invocations.", wasmLabels, nil)
	descWasmMemory = prometheus.NewDesc("berth_wasm_memory_bytes",
		"Linear memory of a Wasm function's running instances: the size each has grown to, an upper bound of what they hold.", wasmLabels, nil)
)

// Collector exports each function's running instances, invocations and
// the memory its instances use, for the composition root to register.
func (h *Host) Collector() prometheus.Collector { return collector{h} }

type collector struct{ h *Host }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWasmRunning
	ch <- descWasmStarted
	ch <- descWasmMemory
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.h.mu.Lock()
	fns := make([]*function, 0, len(c.h.fns))
	for _, fn := range c.h.fns {
		fns = append(fns, fn)
	}
	c.h.mu.Unlock()
	for _, fn := range fns {
		ch <- prometheus.MustNewConstMetric(descWasmRunning, prometheus.GaugeValue, float64(fn.running.Load()), fn.env, fn.name)
		ch <- prometheus.MustNewConstMetric(descWasmStarted, prometheus.CounterValue, float64(fn.started.Load()), fn.env, fn.name)
		ch <- prometheus.MustNewConstMetric(descWasmMemory, prometheus.GaugeValue, float64(max(fn.memory.Load(), 0)), fn.env, fn.name)
	}
}
