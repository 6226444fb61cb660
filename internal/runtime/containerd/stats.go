package containerd

import (
	"context"
	"fmt"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"

	"berth.dev/berth/internal/runtime"
)

// Stats reads the task's cgroup counters. Memory is the working set
// (usage less inactive page cache), as the kubelet reports it, so a
// service that reads many files is not counted as using them.
func (d *Driver) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	ctx = d.ctx(ctx)
	task, err := d.task(ctx, id)
	if err != nil {
		return runtime.Stats{}, err
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return runtime.Stats{}, wrap(err, "metrics of %s", id)
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("metrics of %s: %w", id, err)
	}
	var s runtime.Stats
	switch v := data.(type) {
	case *v1stats.Metrics:
		if v.CPU != nil && v.CPU.Usage != nil {
			s.CPUUsageNanos = v.CPU.Usage.Total
		}
		if v.Memory != nil && v.Memory.Usage != nil {
			s.MemoryBytes = workingSet(v.Memory.Usage.Usage, v.Memory.TotalInactiveFile)
		}
	case *v2stats.Metrics:
		if v.CPU != nil {
			s.CPUUsageNanos = v.CPU.UsageUsec * 1000
		}
		if v.Memory != nil {
			s.MemoryBytes = workingSet(v.Memory.Usage, v.Memory.InactiveFile)
		}
	default:
		return runtime.Stats{}, fmt.Errorf("metrics of %s: unknown type %T", id, data)
	}
	return s, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}
