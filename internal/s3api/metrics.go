package s3api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the S3 API's requests: an Observer and a Prometheus
// collector the composition root registers.
type Metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics returns empty counters.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_s3_requests_total",
			Help: "Requests to the environments' S3 API, by operation and status.",
		}, []string{"environment", "operation", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_s3_bytes_total",
			Help: "Bytes received (in) and sent (out) by the S3 API.",
		}, []string{"environment", "direction"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_s3_request_duration_seconds",
			Help:    "Time to answer an S3 request, the body's transfer included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"operation"}),
	}
}

func (m *Metrics) Observe(env, op string, status int, in, out int64, d time.Duration) {
	if status == 0 {
		status = 200
	}
	m.requests.WithLabelValues(env, op, strconv.Itoa(status)).Inc()
	m.bytes.WithLabelValues(env, "in").Add(float64(in))
	m.bytes.WithLabelValues(env, "out").Add(float64(out))
	m.latency.WithLabelValues(op).Observe(d.Seconds())
}

func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.bytes.Describe(ch)
	m.latency.Describe(ch)
}

func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.bytes.Collect(ch)
	m.latency.Collect(ch)
}
