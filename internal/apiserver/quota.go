package apiserver

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// demand is what workloads claim against a quota: CPU in millicores and
// memory in bytes.
type demand struct {
	cpu, mem int64
}

func (d demand) add(o demand) demand { return demand{d.cpu + o.cpu, d.mem + o.mem} }

// workloadDemand is a workload at its max scale: a service's replicas or a
// function's scale.max, times its limits; a template without a limit
// counts as v1.DefaultQuotaCPU / v1.DefaultQuotaMemory, so leaving limits
// out cannot slip past a quota. Other kinds claim nothing.
func workloadDemand(obj v1.Object) (demand, error) {
	var n int32
	var t *v1.Template
	switch o := obj.(type) {
	case *v1.Service:
		n, t = 1, &o.Spec.Template
		if o.Spec.Replicas != nil {
			n = *o.Spec.Replicas
		}
	case *v1.Function:
		n, t = v1.DefaultScaleMax, &o.Spec.Template
		if o.Spec.Scale.Max != nil {
			n = *o.Spec.Scale.Max
		}
	default:
		return demand{}, nil
	}
	cpu, mem := t.Resources.CPU, t.Resources.Memory
	if cpu == "" {
		cpu = v1.DefaultQuotaCPU
	}
	if mem == "" {
		mem = v1.DefaultQuotaMemory
	}
	c, err := v1.ParseCPU(cpu)
	if err != nil {
		return demand{}, err
	}
	m, err := v1.ParseMemory(mem)
	if err != nil {
		return demand{}, err
	}
	return demand{cpu: int64(n) * c, mem: int64(n) * m}, nil
}

// quotaCheck refuses adding (claimed by ref) to inUse when the sum passes
// q. The message gives the numbers a user needs to decide what to change.
func quotaCheck(env string, q *v1.Quota, inUse, adding demand, ref string) error {
	if q == nil {
		return nil
	}
	if q.CPU != "" {
		limit, err := v1.ParseCPU(q.CPU)
		if err == nil && inUse.cpu+adding.cpu > limit {
			return &v1.Error{Kind: v1.ErrInvalid, Field: "spec.resources", Message: fmt.Sprintf(
				"quota exceeded in environment %q: cpu %s requested (%s in use + %s for %s), quota %s",
				env, humanCPU(inUse.cpu+adding.cpu), humanCPU(inUse.cpu), humanCPU(adding.cpu), ref, humanCPU(limit))}
		}
	}
	if q.Memory != "" {
		limit, err := v1.ParseMemory(q.Memory)
		if err == nil && inUse.mem+adding.mem > limit {
			return &v1.Error{Kind: v1.ErrInvalid, Field: "spec.resources", Message: fmt.Sprintf(
				"quota exceeded in environment %q: memory %s requested (%s in use + %s for %s), quota %s",
				env, humanMemory(inUse.mem+adding.mem), humanMemory(inUse.mem), humanMemory(adding.mem), ref, humanMemory(limit))}
		}
	}
	return nil
}

// checkQuota refuses a Service or Function whose demand would push its
// environment past the environment's quota. The workload's own current
// demand is not counted twice: an update replaces it.
func (s *Server) checkQuota(ctx context.Context, obj v1.Object) error {
	adding, err := workloadDemand(obj)
	if err != nil || adding == (demand{}) {
		return err
	}
	env := obj.GetMetadata().Environment
	var e v1.Environment
	if err := store.Get(ctx, s.store, store.Key{Kind: v1.KindEnvironment, Name: env}, &e); err != nil {
		if v1.IsNotFound(err) {
			return nil // requireEnvironment has answered this already
		}
		return err
	}
	if e.Spec.Quota == nil {
		return nil
	}
	inUse, err := s.environmentDemand(ctx, env, map[string]bool{v1.ObjectRef(obj): true})
	if err != nil {
		return err
	}
	return quotaCheck(env, e.Spec.Quota, inUse, adding, strings.ToLower(obj.GetTypeMeta().Kind)+"/"+obj.GetMetadata().Name)
}

// environmentDemand sums the demand of env's services and functions, but
// for those in skip ("Kind/name").
func (s *Server) environmentDemand(ctx context.Context, env string, skip map[string]bool) (demand, error) {
	var total demand
	for _, kind := range []string{v1.KindService, v1.KindFunction} {
		res, _ := byKind(kind)
		objs, err := s.list(ctx, res, env)
		if err != nil {
			return demand{}, err
		}
		for _, o := range objs {
			if skip[v1.ObjectRef(o)] {
				continue
			}
			v1.SetDefaults(o)
			d, err := workloadDemand(o)
			if err != nil {
				return demand{}, err
			}
			total = total.add(d)
		}
	}
	return total, nil
}

// humanCPU writes millicores as cores: 2500 → "2.5", 250 → "250m".
func humanCPU(m int64) string {
	if m < 1000 && m%1000 != 0 {
		return strconv.FormatInt(m, 10) + "m"
	}
	return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64)
}

// humanMemory writes bytes in the largest binary unit with at most two
// decimals: 9126805504 → "8.5Gi".
func humanMemory(b int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if b >= u.size {
			s := strconv.FormatFloat(float64(b)/float64(u.size), 'f', 2, 64)
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
			return s + u.suffix
		}
	}
	return strconv.FormatInt(b, 10)
}
