package gateway

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Buckets of the request latency: from a cached answer to the default
// timeout.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

var (
	descInFlight = prometheus.NewDesc("berth_requests_in_flight",
		"Requests in the gateway for a workload now: held for a cold start or being proxied.",
		[]string{"environment", "workload"}, nil)
	descUnrouted = prometheus.NewDesc("berth_unrouted_requests_total",
		"Requests that matched no workload (answered 404).", nil, nil)
)

// metrics is the gateway's Prometheus collector: the counters fed on the
// request path, and the in-flight and unrouted counts read from the
// gateway's own state at scrape time.
type metrics struct {
	g        *Gateway
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics(g *Gateway) *metrics {
	return &metrics{
		g: g,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_requests_total",
			Help: "Requests the gateway routed to a workload, by the status it answered (499: the client went away) and the revision of the instance that answered (empty when none did).",
		}, []string{"environment", "workload", "kind", "revision", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_request_duration_seconds",
			Help:    "Time from routing a request to the end of its answer, cold starts included, by the revision of the instance that answered (empty when none did).",
			Buckets: latencyBuckets,
		}, []string{"environment", "workload", "revision"}),
	}
}

// observe counts one routed request once it was answered: the status sent
// (499 when the client went away), the revision of the endpoint that
// answered (0 when none did: a cold start that failed, 503) and the time
// from routing to the end of the answer, both by that revision. The series
// of a target are looked up once and kept with its counters: hashing five
// label values on every request cost more than the rest of the counting.
func (m *metrics) observe(rt *route, revision int64, status int, d time.Duration) {
	s := rt.stats
	k := seriesKey{kind: rt.kind, revision: revision, status: status}
	if sc := s.series.Load(); sc != nil {
		if e, ok := sc.series[k]; ok {
			e.requests.Inc()
			e.latency.Observe(d.Seconds())
			return
		}
	}
	rev := ""
	if revision > 0 {
		rev = strconv.FormatInt(revision, 10)
	}
	// Copy on write: the request path reads the cache without a lock.
	s.seriesMu.Lock()
	next := &seriesCache{series: map[seriesKey]seriesEntry{}}
	var lat prometheus.Observer
	if sc := s.series.Load(); sc != nil {
		for k2, e := range sc.series {
			next.series[k2] = e
			if k2.revision == revision {
				lat = e.latency // one histogram per revision, whatever the status
			}
		}
	}
	if lat == nil {
		lat = m.latency.WithLabelValues(rt.env, rt.name, rev)
	}
	e := seriesEntry{requests: m.requests.WithLabelValues(rt.env, rt.name, rt.kind, rev, strconv.Itoa(status)), latency: lat}
	next.series[k] = e
	s.series.Store(next)
	s.seriesMu.Unlock()
	e.requests.Inc()
	e.latency.Observe(d.Seconds())
}

// seriesCache is a target's metric series once looked up: immutable,
// replaced whole when a series is added.
type seriesCache struct {
	series map[seriesKey]seriesEntry
}

// seriesEntry is the berth_requests_total series of one key and the
// berth_request_duration_seconds series of its revision.
type seriesEntry struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// seriesKey names one berth_requests_total series of a target.
type seriesKey struct {
	kind     string
	revision int64
	status   int
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.latency.Describe(ch)
	ch <- descInFlight
	ch <- descUnrouted
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.latency.Collect(ch)
	n, _ := m.g.unrouted.snapshot()
	ch <- prometheus.MustNewConstMetric(descUnrouted, prometheus.CounterValue, float64(n))
	g := m.g
	g.mu.Lock()
	active := make(map[string]int64, len(g.stats))
	for k, s := range g.stats {
		active[k] = s.active.Load()
	}
	g.mu.Unlock()
	for k, n := range active {
		env, name, _ := strings.Cut(k, "/")
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(n), env, name)
	}
}

// Collector returns the gateway's metrics for the composition root to
// register: berth_requests_total, berth_request_duration_seconds,
// berth_requests_in_flight and berth_unrouted_requests_total.
func (g *Gateway) Collector() prometheus.Collector { return g.metrics }
