package v1

import "fmt"

// The built-in limits of an instance: what a template gets for the cpu,
// memory and pids it leaves out when its environment's spec.limits.default
// does not say either. CPU and memory are what quotas have always counted
// a template without limits as.
const (
	DefaultCPU    = "500m"
	DefaultMemory = "256Mi"
	DefaultPids   = 1024
)

// Bounds of resources.pids. Threads count as well as processes (the
// kernel's pids controller counts tasks), and a Go or Java runtime starts a
// handful before main runs, so fewer than MinPids would make a workload
// that dies at start for a reason hard to see. MaxPids is the kernel's
// PID_MAX_LIMIT on 64-bit machines.
const (
	MinPids = 16
	MaxPids = 1 << 22
)

// LimitRange bounds the instances of an environment, as a Kubernetes
// LimitRange bounds a namespace's containers.
type LimitRange struct {
	// Default is what a template gets for the resources it leaves out.
	// The API server writes it into the workload's spec when the workload
	// is applied, so what a quota counts is what runs and `get` shows it.
	// What Default leaves out falls back to the built-in defaults
	// (DefaultCPU, DefaultMemory, DefaultPids), capped at Max.
	Default Resources `json:"default,omitzero"`
	// Max bounds each instance; a template above it is refused.
	Max Resources `json:"max,omitzero"`
}

// Limits are Resources parsed: what the kernel enforces on one instance.
type Limits struct {
	CPUMillis   int64
	MemoryBytes int64
	Pids        int64
}

// Limits parses r, giving each part r leaves out its built-in default.
// Workloads applied since defaults are written at apply have every part;
// one stored before (and its revisions) runs, and counts against quotas,
// with the built-in defaults.
func (r Resources) Limits() (Limits, error) {
	cpu, mem := r.CPU, r.Memory
	if cpu == "" {
		cpu = DefaultCPU
	}
	if mem == "" {
		mem = DefaultMemory
	}
	var l Limits
	var err error
	if l.CPUMillis, err = ParseCPU(cpu); err != nil {
		return Limits{}, err
	}
	if l.MemoryBytes, err = ParseMemory(mem); err != nil {
		return Limits{}, err
	}
	l.Pids = r.Pids
	if l.Pids == 0 {
		l.Pids = DefaultPids
	}
	return l, nil
}

// ApplyLimitRange fills in the resources t leaves out, from lr's defaults
// and then the built-in ones (capped at lr's max), and refuses a template
// whose limits are above lr's max. lr may be nil; env names the
// environment in messages and p is the template's field path ("spec").
// t must have been validated.
func ApplyLimitRange(t *Template, lr *LimitRange, env, p string) error {
	var def, max Resources
	if lr != nil {
		def, max = lr.Default, lr.Max
	}
	r := &t.Resources
	if r.CPU == "" {
		r.CPU = firstSet(def.CPU, minCPU(DefaultCPU, max.CPU))
	}
	if r.Memory == "" {
		r.Memory = firstSet(def.Memory, minMemory(DefaultMemory, max.Memory))
	}
	if r.Pids == 0 {
		r.Pids = def.Pids
		if r.Pids == 0 {
			r.Pids = DefaultPids
			if max.Pids != 0 && max.Pids < r.Pids {
				r.Pids = max.Pids
			}
		}
	}
	above := func(name, got, limit string) error {
		return FieldError(p+".resources."+name, "%s per instance is above the most environment %q allows, %s "+
			"(its spec.limits.max.%s; only an admin of all environments may change it)", got, env, limit, name)
	}
	if max.CPU != "" {
		c, _ := ParseCPU(r.CPU)
		m, _ := ParseCPU(max.CPU)
		if c > m {
			return above("cpu", r.CPU, max.CPU)
		}
	}
	if max.Memory != "" {
		b, _ := ParseMemory(r.Memory)
		m, _ := ParseMemory(max.Memory)
		if b > m {
			return above("memory", r.Memory, max.Memory)
		}
	}
	if max.Pids != 0 && r.Pids > max.Pids {
		return above("pids", fmt.Sprint(r.Pids), fmt.Sprint(max.Pids))
	}
	return nil
}

func firstSet(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// minCPU is the smaller of two valid CPU quantities; "" is no bound.
func minCPU(a, b string) string {
	if b == "" {
		return a
	}
	x, _ := ParseCPU(a)
	y, _ := ParseCPU(b)
	if y < x {
		return b
	}
	return a
}

// minMemory is the smaller of two valid memory quantities; "" is no bound.
func minMemory(a, b string) string {
	if b == "" {
		return a
	}
	x, _ := ParseMemory(a)
	y, _ := ParseMemory(b)
	if y < x {
		return b
	}
	return a
}

func validateLimitRange(lr *LimitRange) error {
	if lr == nil {
		return nil
	}
	if err := validateResources(&lr.Default, "spec.limits.default"); err != nil {
		return err
	}
	if err := validateResources(&lr.Max, "spec.limits.max"); err != nil {
		return err
	}
	d, m := lr.Default, lr.Max
	above := func(name, def, max string) error {
		return FieldError("spec.limits.default."+name, "%s is above spec.limits.max.%s, %s: no template could use the default", def, name, max)
	}
	if d.CPU != "" && m.CPU != "" && minCPU(d.CPU, m.CPU) != d.CPU {
		return above("cpu", d.CPU, m.CPU)
	}
	if d.Memory != "" && m.Memory != "" && minMemory(d.Memory, m.Memory) != d.Memory {
		return above("memory", d.Memory, m.Memory)
	}
	if d.Pids != 0 && m.Pids != 0 && d.Pids > m.Pids {
		return above("pids", fmt.Sprint(d.Pids), fmt.Sprint(m.Pids))
	}
	return nil
}
