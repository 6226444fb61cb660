package apiserver

import (
	"bufio"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// NodeCapacity is what the node that runs every instance has.
type NodeCapacity struct {
	CPUMillis   int64
	MemoryBytes int64
}

// HostCapacity reads this machine's capacity: the CPUs this process may
// run on and the memory /proc/meminfo reports.
func HostCapacity() (NodeCapacity, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return NodeCapacity{}, fmt.Errorf("node capacity: %w", err)
	}
	defer f.Close()
	mem, err := memTotal(f)
	if err != nil {
		return NodeCapacity{}, fmt.Errorf("node capacity: /proc/meminfo: %w", err)
	}
	return NodeCapacity{CPUMillis: int64(goruntime.NumCPU()) * 1000, MemoryBytes: mem}, nil
}

// memTotal reads MemTotal from a /proc/meminfo, in bytes.
func memTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected MemTotal line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("MemTotal: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no MemTotal line")
}

// nodeCheck refuses a workload that this node could never run: an
// instance larger than the node, or (memory only) the workload at its max
// scale larger than the node. CPU is compressible: instances over their
// share are throttled, never killed, so CPU limits may add up past the
// node's cores, as Kubernetes lets limits do. Memory is not: instances
// whose limits add up past the node's memory get OOM-killed by the kernel
// before they reach their own limits. Workloads are checked one at a time
// (limits may overcommit the node across workloads; quotas are the tool
// to share it).
func nodeCheck(node NodeCapacity, obj v1.Object) error {
	t := v1.TemplateOf(obj)
	if t == nil || node == (NodeCapacity{}) {
		return nil
	}
	l, err := t.Resources.Limits()
	if err != nil {
		return err
	}
	if node.CPUMillis > 0 && l.CPUMillis > node.CPUMillis {
		return v1.FieldError("spec.resources.cpu", "%s cores per instance is more than this node has, %s cores: "+
			"an instance can never use more than the whole node", humanCPU(l.CPUMillis), humanCPU(node.CPUMillis))
	}
	if node.MemoryBytes <= 0 {
		return nil
	}
	if l.MemoryBytes > node.MemoryBytes {
		return v1.FieldError("spec.resources.memory", "%s of memory per instance is more than this node has, %s",
			humanMemory(l.MemoryBytes), humanMemory(node.MemoryBytes))
	}
	n, field, what := maxInstances(obj)
	if total := int64(n) * l.MemoryBytes; total > node.MemoryBytes {
		return v1.FieldError(field, "%d %s × %s of memory = %s, more than this node has, %s; "+
			"lower %s or resources.memory", n, what, humanMemory(l.MemoryBytes), humanMemory(total),
			humanMemory(node.MemoryBytes), strings.TrimPrefix(field, "spec."))
	}
	return nil
}

// maxInstances is how many instances a workload may run at once, the
// field that says so, and what to call them in a message.
func maxInstances(obj v1.Object) (n int32, field, what string) {
	switch o := obj.(type) {
	case *v1.Service:
		n = v1.DefaultReplicas
		if o.Spec.Replicas != nil {
			n = *o.Spec.Replicas
		}
		return n, "spec.replicas", "replicas"
	case *v1.Function:
		n = v1.DefaultScaleMax
		if o.Spec.Scale.Max != nil {
			n = *o.Spec.Scale.Max
		}
		return n, "spec.scale.max", "instances at scale.max"
	}
	return 0, "", ""
}
