package queue

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// depthTimeout bounds the one JetStream read of a scrape; past it the
// scrape goes without queue depths rather than waiting.
const depthTimeout = time.Second

var descDepth = prometheus.NewDesc("berth_queue_depth",
	"Async invocations of a function stored and not finished: waiting, backing off, or running.",
	[]string{"environment", "function"}, nil)

// metrics is the queue's Prometheus collector: async outcomes, counted as
// they are recorded, and the depth of each configured function, read from
// JetStream at scrape time in one call for all of them.
type metrics struct {
	q        *Queue
	outcomes *prometheus.CounterVec
}

func newMetrics(q *Queue) *metrics {
	return &metrics{q: q, outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_async_invocations_total",
		Help: "Async invocations finished, by outcome (succeeded, failed).",
	}, []string{"environment", "function", "outcome"})}
}

// finished counts an invocation that reached its final status,
// Succeeded or Failed: outcome "succeeded" or "failed".
func (m *metrics) finished(env, fn, status string) {
	m.outcomes.WithLabelValues(env, fn, strings.ToLower(status)).Inc()
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.outcomes.Describe(ch)
	ch <- descDepth
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.outcomes.Collect(ch)
	q := m.q
	q.mu.Lock()
	fns := make([]fnKey, 0, len(q.fns))
	for k := range q.fns {
		fns = append(fns, k)
	}
	q.mu.Unlock()
	if len(fns) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(q.ctx, depthTimeout)
	defer cancel()
	info, err := q.work.Info(ctx, jetstream.WithSubjectFilter(workSubject("*", "*")))
	if err != nil {
		q.log.Debug("queue depth", "err", err)
		return
	}
	for _, k := range fns {
		n := info.State.Subjects[workSubject(k.env, k.name)]
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(n), k.env, k.name)
	}
}

// Collector returns the queue's metrics for the composition root to
// register: berth_async_invocations_total and berth_queue_depth, the
// latter for the functions SetFunctions named.
func (q *Queue) Collector() prometheus.Collector { return q.metrics }
