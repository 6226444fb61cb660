package kubernetes

import (
	"bytes"
	"context"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/internal/backend"
)

// Stats reads each pod's CPU and memory from its node's kubelet resource
// metrics (/metrics/resource, through the API server's node proxy), once
// per node.
func (b *Backend) Stats(ctx context.Context, ref backend.Ref) (map[string]backend.Stats, error) {
	ns := b.Namespace(ref.Environment)
	objs, _ := b.pods.GetIndexer().ByIndex(workloadIndex, indexKey(ns, ref.Kind, ref.Name))
	nodes := map[string]bool{}
	want := map[string]bool{}
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning {
			nodes[p.Spec.NodeName] = true
			want[p.Name] = true
		}
	}
	out := map[string]backend.Stats{}
	for node := range nodes {
		raw, err := b.client.CoreV1().RESTClient().Get().
			AbsPath("/api/v1/nodes", node, "proxy/metrics/resource").DoRaw(ctx)
		if err != nil {
			return out, b.wrap(err, "get", "nodes/proxy (kubelet resource metrics) of "+node, "")
		}
		parseResourceMetrics(raw, ns, want, out)
	}
	return out, nil
}

// parseResourceMetrics adds the pods' samples of the kubelet's resource
// metrics to out.
func parseResourceMetrics(raw []byte, ns string, want map[string]bool, out map[string]backend.Stats) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return
	}
	read := func(name string, set func(*backend.Stats, float64)) {
		f := fams[name]
		if f == nil {
			return
		}
		for _, m := range f.Metric {
			var pod, podNS, container string
			for _, l := range m.Label {
				switch model.LabelName(l.GetName()) {
				case "pod":
					pod = l.GetValue()
				case "namespace":
					podNS = l.GetValue()
				case "container":
					container = l.GetValue()
				}
			}
			if podNS != ns || !want[pod] || container != containerName {
				continue
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			st := out[pod]
			set(&st, v)
			out[pod] = st
		}
	}
	read("container_cpu_usage_seconds_total", func(s *backend.Stats, v float64) { s.CPUUsageNanos = uint64(v * 1e9) })
	read("container_memory_working_set_bytes", func(s *backend.Stats, v float64) { s.MemoryBytes = uint64(v) })
}
