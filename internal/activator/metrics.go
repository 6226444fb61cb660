package activator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "berth.dev/berth/api/v1"
)

// Buckets of a cold start: from a warm standby (milliseconds) to a slow
// image pull.
var coldBuckets = []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60}

var (
	descColdStarts = prometheus.NewDesc("berth_cold_starts_total",
		"Cold starts of a function: requests that found it at zero and waited for an instance.",
		[]string{"environment", "function"}, nil)
	descHeld = prometheus.NewDesc("berth_cold_start_waiting_requests",
		"Requests held now while a function starts from zero.",
		[]string{"environment", "function"}, nil)
)

// metrics is the activator's Prometheus collector: every cold start's
// wait, observed as it ends, and per function of the routing table the
// cold starts so far and the requests held now.
type metrics struct {
	a        *Activator
	duration *prometheus.HistogramVec
	phases   *prometheus.HistogramVec
}

func newMetrics(a *Activator) *metrics {
	return &metrics{a: a,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_cold_start_duration_seconds",
			Help:    "Time a request waited for a function at zero to get a ready instance.",
			Buckets: coldBuckets,
		}, []string{"environment", "function"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_cold_start_phase_seconds",
			Help: "Where a cold start's wait went, by phase: schedule (deciding and asking for an instance), " +
				"sandbox (network and container creation; zero from a standby), start (the task's start), " +
				"init (the program's initialisation to its first ready check), route (readiness reaching the gateway).",
			Buckets: coldBuckets,
		}, []string{"environment", "function", "phase"}),
	}
}

func (m *metrics) coldStart(env, name string, wait time.Duration, phases []phase) {
	m.duration.WithLabelValues(env, name).Observe(wait.Seconds())
	for _, p := range phases {
		m.phases.WithLabelValues(env, name, p.name).Observe(p.to.Sub(p.from).Seconds())
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.duration.Describe(ch)
	m.phases.Describe(ch)
	ch <- descColdStarts
	ch <- descHeld
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.duration.Collect(ch)
	m.phases.Collect(ch)
	type count struct {
		k    key
		held int
		n    int64
	}
	m.a.mu.Lock()
	counts := make([]count, 0, len(m.a.targets))
	for k, t := range m.a.targets {
		if t.kind == v1.KindFunction {
			counts = append(counts, count{k, t.held, t.coldStarts})
		}
	}
	m.a.mu.Unlock()
	for _, c := range counts {
		ch <- prometheus.MustNewConstMetric(descColdStarts, prometheus.CounterValue, float64(c.n), c.k.env, c.k.name)
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(c.held), c.k.env, c.k.name)
	}
}

// Collector returns the activator's metrics for the composition root to
// register: berth_cold_starts_total, berth_cold_start_waiting_requests,
// berth_cold_start_duration_seconds and berth_cold_start_phase_seconds,
// for the functions of the routing table.
func (a *Activator) Collector() prometheus.Collector { return a.metrics }
