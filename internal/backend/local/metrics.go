package local

import "github.com/prometheus/client_golang/prometheus"

var (
	descStandbyMemory = prometheus.NewDesc("berth_standby_memory_bytes",
		"Memory held by the frozen standbys on this machine (started, initialised and frozen ahead of a request).", nil, nil)
	descStandbyMemoryLimit = prometheus.NewDesc("berth_standby_memory_limit_bytes",
		"The memory frozen standbys may hold together (berth server --standby-memory); past it standbys wait created.", nil, nil)
	descFrozenStandbys = prometheus.NewDesc("berth_frozen_standbys",
		"Frozen standbys on this machine.", nil, nil)
)

// Collector reports what the frozen standbys of this machine hold, for
// the composition root to register.
func (b *Backend) Collector() prometheus.Collector { return standbyCollector{b.agent.frozenMem} }

type standbyCollector struct{ m *standbyMemory }

func (c standbyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStandbyMemory
	ch <- descStandbyMemoryLimit
	ch <- descFrozenStandbys
}

func (c standbyCollector) Collect(ch chan<- prometheus.Metric) {
	held, n := c.m.total()
	ch <- prometheus.MustNewConstMetric(descStandbyMemory, prometheus.GaugeValue, float64(held))
	ch <- prometheus.MustNewConstMetric(descStandbyMemoryLimit, prometheus.GaugeValue, float64(c.m.limit))
	ch <- prometheus.MustNewConstMetric(descFrozenStandbys, prometheus.GaugeValue, float64(n))
}
