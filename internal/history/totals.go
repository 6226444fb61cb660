package history

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sub is h minus an earlier reading of the same histogram: the
// observations between the two. A histogram that went backwards was
// reset, and counts from zero.
func (h Histogram) sub(prev Histogram) Histogram {
	if h.Count < prev.Count || !slices.Equal(h.Bounds, prev.Bounds) {
		return h
	}
	d := Histogram{Count: h.Count - prev.Count, Sum: h.Sum - prev.Sum, Bounds: h.Bounds, Counts: make([]uint64, len(h.Counts))}
	for i := range h.Counts {
		if h.Counts[i] >= prev.Counts[i] {
			d.Counts[i] = h.Counts[i] - prev.Counts[i]
		}
	}
	if d.Sum < 0 {
		d.Sum = 0
	}
	return d
}

// Quantile estimates the q-quantile as Prometheus's histogram_quantile
// does: linear within the bucket it falls in, the first bucket starting at
// zero, and the largest finite bound for what is above every bound.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := q * float64(h.Count)
	for i, c := range h.Counts {
		if float64(c) >= rank {
			lo, below := 0.0, uint64(0)
			if i > 0 {
				lo, below = h.Bounds[i-1], h.Counts[i-1]
			}
			in := c - below
			if in == 0 {
				return h.Bounds[i]
			}
			return lo + (h.Bounds[i]-lo)*(rank-float64(below))/float64(in)
		}
	}
	return h.Bounds[len(h.Bounds)-1]
}

// Metric names the totals are read from: the gateway's and the activator's
// public metrics (docs/observability.md).
const (
	metricRequests     = "berth_requests_total"
	metricDuration     = "berth_request_duration_seconds"
	metricColdStartDur = "berth_cold_start_duration_seconds"
)

// CollectorTotals reads the totals from the Prometheus collectors the
// gateway and the activator already export, so the recorder needs no hook
// on the request path.
type CollectorTotals struct {
	reg *prometheus.Registry
}

// NewCollectorTotals gathers from the given collectors (the gateway's and
// the activator's). Registering them in a registry of its own leaves the
// server's /metrics registry alone.
func NewCollectorTotals(cs ...prometheus.Collector) (*CollectorTotals, error) {
	reg := prometheus.NewRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
	}
	return &CollectorTotals{reg: reg}, nil
}

// Totals implements TotalsSource.
func (c *CollectorTotals) Totals() (map[Workload]Totals, error) {
	fams, err := c.reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[Workload]Totals{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			l := labels(m)
			switch f.GetName() {
			case metricRequests:
				k := Workload{l["environment"], l["workload"]}
				t := out[k]
				n := int64(m.GetCounter().GetValue())
				t.Answered += n
				if code, _ := strconv.Atoi(l["code"]); code >= 500 && code < 600 {
					t.Errors += n
				}
				out[k] = t
			case metricDuration:
				k := Workload{l["environment"], l["workload"]}
				t := out[k]
				// One series per revision: the workload's is their sum.
				t.Duration = addHistograms(t.Duration, fromDTO(m.GetHistogram()))
				out[k] = t
			case metricColdStartDur:
				k := Workload{l["environment"], l["function"]}
				t := out[k]
				t.ColdStart = fromDTO(m.GetHistogram())
				out[k] = t
			}
		}
	}
	return out, nil
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func fromDTO(h *dto.Histogram) Histogram {
	out := Histogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		out.Bounds = append(out.Bounds, b.GetUpperBound())
		out.Counts = append(out.Counts, b.GetCumulativeCount())
	}
	return out
}

// addHistograms sums two histograms of the same buckets; a zero a is none.
func addHistograms(a, b Histogram) Histogram {
	if a.Count == 0 && len(a.Counts) == 0 || len(a.Counts) != len(b.Counts) {
		return b
	}
	out := Histogram{Count: a.Count + b.Count, Sum: a.Sum + b.Sum, Bounds: b.Bounds, Counts: make([]uint64, len(b.Counts))}
	for i := range b.Counts {
		out.Counts[i] = a.Counts[i] + b.Counts[i]
	}
	return out
}
