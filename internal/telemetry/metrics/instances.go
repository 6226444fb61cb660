package metrics

import (
	"context"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	v1 "berth.dev/berth/api/v1"
)

// Inventory is what the instance gauges count: the workloads and their
// instances as the platform holds them now. The objects are read, never
// changed.
type Inventory struct {
	Services  []*v1.Service
	Functions []*v1.Function
	Instances []*v1.Instance
}

// Descriptions of the instance metrics, computed at scrape time.
var (
	wlLabels = []string{"environment", "workload", "kind"}

	descDesired = prometheus.NewDesc("berth_instances_desired",
		"Instances a workload should have: a Service's replicas, a Function's autoscaled count.", wlLabels, nil)
	descReady = prometheus.NewDesc("berth_instances_ready",
		"Instances of a workload that are ready and not draining.", wlLabels, nil)
	descRevisionReady = prometheus.NewDesc("berth_revision_instances_ready",
		"Ready instances of a workload by revision: during a split or a canary, more than one revision has some.",
		[]string{"environment", "workload", "kind", "revision"}, nil)
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
)

// snapshot is the instance metrics of one scrape. It is a collector of its
// own, gathered per request, so that the runtime reads are bounded by that
// request's context.
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
	if m.cfg.Inventory != nil {
		ctx, cancel := context.WithTimeout(ctx, m.cfg.ScrapeTimeout)
		defer cancel()
		add := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
			out = append(out, prometheus.MustNewConstMetric(d, t, v, labels...))
		}
		started := instanceGauges(m.cfg.Inventory(), add)
		m.instanceStats(ctx, started, add)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(out)
	return reg
}

type addFunc func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string)

type wlKey struct{ env, kind, name string }

type wlCount struct {
	desired, ready, running, restarts int
	readyByRevision                   map[int64]int
}

// instanceGauges counts each workload's instances; it returns the started
// ones, whose CPU and memory the runtime has.
func instanceGauges(inv Inventory, add addFunc) []*v1.Instance {
	counts := map[wlKey]*wlCount{}
	for _, s := range inv.Services {
		desired := v1.DefaultReplicas
		if s.Spec.Replicas != nil {
			desired = int(*s.Spec.Replicas)
		}
		counts[wlKey{s.Metadata.Environment, v1.KindService, s.Metadata.Name}] = &wlCount{desired: desired}
	}
	for _, f := range inv.Functions {
		counts[wlKey{f.Metadata.Environment, v1.KindFunction, f.Metadata.Name}] = &wlCount{desired: int(f.Status.Desired)}
	}
	var started []*v1.Instance
	for _, i := range inv.Instances {
		c := counts[wlKey{i.Metadata.Environment, i.Spec.OwnerKind, i.Spec.Owner}]
		if c == nil {
			continue // its workload was deleted; it is on its way out
		}
		st := i.Status
		if st.Ready && !i.Spec.Draining {
			c.ready++
			if c.readyByRevision == nil {
				c.readyByRevision = map[int64]int{}
			}
			c.readyByRevision[i.Spec.Revision]++
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
		for rev, n := range c.readyByRevision {
			add(descRevisionReady, prometheus.GaugeValue, float64(n), k.env, k.name, k.kind, strconv.FormatInt(rev, 10))
		}
	}
	return started
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
