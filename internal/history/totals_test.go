package history

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCollectorTotalsSumsRevisions: during a split the gateway keeps a
// latency series per revision; a workload's minute counts all of them.
func TestCollectorTotalsSumsRevisions(t *testing.T) {
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricDuration, Buckets: []float64{0.1, 1}},
		[]string{"environment", "workload", "revision"})
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests},
		[]string{"environment", "workload", "kind", "revision", "code"})
	lat.WithLabelValues("dev", "web", "1").Observe(0.05)
	lat.WithLabelValues("dev", "web", "1").Observe(0.05)
	lat.WithLabelValues("dev", "web", "2").Observe(0.5)
	lat.WithLabelValues("dev", "web", "").Observe(0.01)
	reqs.WithLabelValues("dev", "web", "Service", "1", "200").Add(2)
	reqs.WithLabelValues("dev", "web", "Service", "2", "500").Add(1)
	c, err := NewCollectorTotals(lat, reqs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Totals()
	if err != nil {
		t.Fatal(err)
	}
	w := got[Workload{"dev", "web"}]
	if w.Answered != 3 || w.Errors != 1 {
		t.Errorf("answered %d, errors %d; want 3, 1", w.Answered, w.Errors)
	}
	d := w.Duration
	if d.Count != 4 || len(d.Counts) != 2 || d.Counts[0] != 3 || d.Counts[1] != 4 {
		t.Errorf("duration %+v; want 4 requests, 3 under 0.1s, 4 under 1s", d)
	}
}
