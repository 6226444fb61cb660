package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// Descriptions of the metrics computed at scrape time.
var (
	wlLabels = []string{"environment", "workload", "kind"}

	descInFlight = prometheus.NewDesc("berth_requests_in_flight",
		"Requests in the gateway for a workload now: held for a cold start or being proxied.",
		[]string{"environment", "workload"}, nil)
	descUnrouted = prometheus.NewDesc("berth_unrouted_requests_total",
		"Requests that matched no workload (answered 404).", nil, nil)
	descDesired = prometheus.NewDesc("berth_instances_desired",
		"Instances a workload should have: a Service's replicas, a Function's autoscaled count.", wlLabels, nil)
	descReady = prometheus.NewDesc("berth_instances_ready",
		"Instances of a workload that are ready and not draining.", wlLabels, nil)
	descRunning = prometheus.NewDesc("berth_instances_running",
		"Instances of a workload whose process is started (Starting or Running), ready or not.", wlLabels, nil)
	descRestarts = prometheus.NewDesc("berth_instance_restarts",
		"Restarts summed over a workload's current instances (drops when instances are replaced).", wlLabels, nil)
	descCPU = prometheus.NewDesc("berth_instance_cpu_seconds_total",
		"CPU time an instance's container has used, from containerd.",
		[]string{"environment", "workload", "instance"}, nil)
	descMemory = prometheus.NewDesc("berth_instance_memory_bytes",
		"Memory an instance's container uses now, from containerd.",
		[]string{"environment", "workload", "instance"}, nil)
	descColdStarts = prometheus.NewDesc("berth_cold_starts_total",
		"Cold starts of a function: requests that found it at zero and waited for an instance.",
		[]string{"environment", "function"}, nil)
	descHeld = prometheus.NewDesc("berth_cold_start_waiting_requests",
		"Requests held now while a function starts from zero.",
		[]string{"environment", "function"}, nil)
	descQueueDepth = prometheus.NewDesc("berth_queue_depth",
		"Async invocations of a function stored and not finished: waiting, backing off, or running.",
		[]string{"environment", "function"}, nil)
	descWfRunning = prometheus.NewDesc("berth_workflow_executions_running",
		"Workflow executions not finished.", []string{"environment", "workflow"}, nil)
	descWfFinished = prometheus.NewDesc("berth_workflow_executions_total",
		"Workflow executions finished, by final status.", []string{"environment", "workflow", "status"}, nil)
	descWfTransitions = prometheus.NewDesc("berth_workflow_transitions_total",
		"States entered by a workflow's executions.", []string{"environment", "workflow"}, nil)
)

// snapshot is the metrics of one scrape. It is a Gatherer of its own so
// that a scrape's reads are bounded by that scrape's request context.
type snapshot []prometheus.Metric

// Describe sends nothing: an unchecked collector, its metrics change with
// the workloads.
func (s snapshot) Describe(chan<- *prometheus.Desc) {}

func (s snapshot) Collect(ch chan<- prometheus.Metric) {
	for _, m := range s {
		ch <- m
	}
}

func (m *Metrics) scrape(ctx context.Context) prometheus.Gatherer {
	var out snapshot
	add := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, t, v, labels...))
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ScrapeTimeout)
	defer cancel()

	m.gatewayMetrics(add)
	fns := m.storeMetrics(ctx, add)
	m.functionMetrics(ctx, fns, add)
	m.workflowMetrics(add)

	reg := prometheus.NewRegistry()
	reg.MustRegister(out)
	return reg
}

type addFunc func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string)

func (m *Metrics) gatewayMetrics(add addFunc) {
	if m.cfg.Gateway == nil {
		return
	}
	for _, st := range m.cfg.Gateway.Stats() {
		if st.Environment == "" && st.Name == "" {
			add(descUnrouted, prometheus.CounterValue, float64(st.Requests))
			continue
		}
		n, _ := m.cfg.Gateway.Load(st.Environment, st.Name)
		add(descInFlight, prometheus.GaugeValue, float64(n), st.Environment, st.Name)
	}
}

type wlKey struct{ env, kind, name string }

type wlCount struct {
	desired, ready, running, restarts int
}

// storeMetrics computes the instance gauges and reads CPU and memory of
// every started instance; it returns the functions for functionMetrics.
func (m *Metrics) storeMetrics(ctx context.Context, add addFunc) []*v1.Function {
	if m.cfg.Store == nil {
		return nil
	}
	svcs, _, err := store.List[v1.Service](ctx, m.cfg.Store, v1.KindService, "")
	if err != nil {
		m.log.Warn("metrics: list services", "err", err)
		return nil
	}
	fns, _, err := store.List[v1.Function](ctx, m.cfg.Store, v1.KindFunction, "")
	if err != nil {
		m.log.Warn("metrics: list functions", "err", err)
		return nil
	}
	insts, _, err := store.List[v1.Instance](ctx, m.cfg.Store, v1.KindInstance, "")
	if err != nil {
		m.log.Warn("metrics: list instances", "err", err)
		return fns
	}
	counts := map[wlKey]*wlCount{}
	for _, s := range svcs {
		desired := v1.DefaultReplicas
		if s.Spec.Replicas != nil {
			desired = int(*s.Spec.Replicas)
		}
		counts[wlKey{s.Metadata.Environment, v1.KindService, s.Metadata.Name}] = &wlCount{desired: desired}
	}
	for _, f := range fns {
		counts[wlKey{f.Metadata.Environment, v1.KindFunction, f.Metadata.Name}] = &wlCount{desired: int(f.Status.Desired)}
	}
	var started []*v1.Instance
	for _, i := range insts {
		c := counts[wlKey{i.Metadata.Environment, i.Spec.OwnerKind, i.Spec.Owner}]
		if c == nil {
			continue // its workload was deleted; it is on its way out
		}
		st := i.Status
		if st.Ready && !i.Spec.Draining {
			c.ready++
		}
		if st.Phase == v1.PhaseStarting || st.Phase == v1.PhaseRunning {
			c.running++
			started = append(started, i)
		}
		c.restarts += int(st.Restarts)
	}
	for k, c := range counts {
		add(descDesired, prometheus.GaugeValue, float64(c.desired), k.env, k.name, k.kind)
		add(descReady, prometheus.GaugeValue, float64(c.ready), k.env, k.name, k.kind)
		add(descRunning, prometheus.GaugeValue, float64(c.running), k.env, k.name, k.kind)
		add(descRestarts, prometheus.GaugeValue, float64(c.restarts), k.env, k.name, k.kind)
	}
	m.instanceStats(ctx, started, add)
	return fns
}

// statsWorkers bounds the concurrent containerd calls of one scrape.
const statsWorkers = 8

// instanceStats reads CPU and memory of each started instance from the
// runtime, a few at a time; an instance that does not answer before the
// scrape's deadline is left out rather than holding the scrape.
func (m *Metrics) instanceStats(ctx context.Context, insts []*v1.Instance, add addFunc) {
	if m.cfg.Driver == nil || len(insts) == 0 {
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, statsWorkers)
	for _, i := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			env, name := i.Metadata.Environment, i.Metadata.Name
			st, err := m.cfg.Driver.Stats(ctx, env+"."+name)
			if err != nil {
				m.log.Debug("metrics: instance stats", "environment", env, "instance", name, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			add(descCPU, prometheus.CounterValue, float64(st.CPUUsageNanos)/1e9, env, i.Spec.Owner, name)
			add(descMemory, prometheus.GaugeValue, float64(st.MemoryBytes), env, i.Spec.Owner, name)
		}()
	}
	wg.Wait()
}

// functionMetrics reads cold starts from the activator and queue depths.
func (m *Metrics) functionMetrics(ctx context.Context, fns []*v1.Function, add addFunc) {
	if m.cfg.ColdStarts != nil {
		sample := !m.coldHooked.Load()
		for _, f := range fns {
			env, name := f.Metadata.Environment, f.Metadata.Name
			held, n, last := m.cfg.ColdStarts.Stats(env, name)
			add(descColdStarts, prometheus.CounterValue, float64(n), env, name)
			add(descHeld, prometheus.GaugeValue, float64(held), env, name)
			if sample && last != nil {
				m.sampleColdStart(env, name, last)
			}
		}
	}
	if m.cfg.Queue == nil || len(fns) == 0 {
		return
	}
	// Depth is an in-memory lookup in the queue: no deadline needed, and
	// none may be shared with the (possibly slow) containerd calls above.
	for _, f := range fns {
		d := m.cfg.Queue.Depth(f.Metadata.Environment, f.Metadata.Name)
		add(descQueueDepth, prometheus.GaugeValue, float64(d), f.Metadata.Environment, f.Metadata.Name)
	}
}

// sampleColdStart observes the activator's last cold start once.
func (m *Metrics) sampleColdStart(env, name string, last *v1.ColdStart) {
	k := env + "/" + name
	m.coldMu.Lock()
	defer m.coldMu.Unlock()
	if m.coldSeen[k].Equal(last.At) {
		return
	}
	m.coldSeen[k] = last.At
	m.coldDuration.WithLabelValues(env, name).Observe(time.Duration(last.DurationMS * float64(time.Millisecond)).Seconds())
}

func (m *Metrics) workflowMetrics(add addFunc) {
	if m.cfg.Workflows == nil {
		return
	}
	for _, w := range m.cfg.Workflows.WorkflowCounts() {
		add(descWfRunning, prometheus.GaugeValue, float64(w.Running), w.Environment, w.Workflow)
		for status, n := range w.Finished {
			add(descWfFinished, prometheus.CounterValue, float64(n), w.Environment, w.Workflow, status)
		}
		add(descWfTransitions, prometheus.CounterValue, float64(w.Transitions), w.Environment, w.Workflow)
	}
}
