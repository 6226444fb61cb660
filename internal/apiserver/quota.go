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
// function's scale.max, times its limits. Admission writes every limit
// into the spec, so this counts what runs; a workload stored before that
// runs, and counts, with the built-in defaults (v1.Resources.Limits).
// Other kinds claim nothing.
func workloadDemand(obj v1.Object) (demand, error) {
	t := v1.TemplateOf(obj)
	if t == nil {
		return demand{}, nil
	}
	n, _, _ := maxInstances(obj)
	l, err := t.Resources.Limits()
	if err != nil {
		return demand{}, err
	}
	return demand{cpu: int64(n) * l.CPUMillis, mem: int64(n) * l.MemoryBytes}, nil
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
// environment e (nil when it does not exist yet) past e's quota. The
// workload's own current demand is not counted twice: an update replaces
// it.
func (s *Server) checkQuota(ctx context.Context, obj v1.Object, e *v1.Environment) error {
	if e == nil || e.Spec.Quota == nil {
		return nil
	}
	adding, err := workloadDemand(obj)
	if err != nil || adding == (demand{}) {
		return err
	}
	env := obj.GetMetadata().Environment
	inUse, err := s.environmentDemand(ctx, env, map[string]bool{v1.ObjectRef(obj): true})
	if err != nil {
		return err
	}
	return quotaCheck(env, e.Spec.Quota, inUse, adding, strings.ToLower(obj.GetTypeMeta().Kind)+"/"+obj.GetMetadata().Name)
}

// environment loads env, or answers nil when it does not exist (a dry run
// of the default environment's first workload).
func (s *Server) environment(ctx context.Context, env string) (*v1.Environment, error) {
	var e v1.Environment
	if err := store.Get(ctx, s.store, store.Key{Kind: v1.KindEnvironment, Name: env}, &e); err != nil {
		if v1.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return &e, nil
}

// admitResources writes e's default limits (or the built-in ones) into
// what obj's template leaves out, as a Kubernetes LimitRange does, so the
// limits a quota counts are the limits that run and `get` shows them; then
// it refuses a template above e's max per instance or beyond what the node
// could ever run. e is nil when the environment does not exist yet.
func (s *Server) admitResources(obj v1.Object, e *v1.Environment) error {
	t := v1.TemplateOf(obj)
	if t == nil {
		return nil
	}
	var lr *v1.LimitRange
	if e != nil {
		lr = e.Spec.Limits
	}
	if err := v1.ApplyLimitRange(t, lr, obj.GetMetadata().Environment, "spec"); err != nil {
		return err
	}
	return nodeCheck(s.capacity, obj)
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
