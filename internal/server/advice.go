package server

import (
	"context"
	"fmt"
	"os"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/advisor"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/controller"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/history"
	"berth.dev/berth/internal/store"
)

// historySource is what the history recorder samples: the workloads from
// the caches, the gateway's load, the backend's instances and usage.
type historySource struct {
	services  *controller.Services
	functions *controller.Functions
	gateway   *gateway.Gateway
	backend   backend.Backend
}

func (h historySource) Targets() []history.Target {
	svcs, fns := h.services.List(""), h.functions.List("")
	out := make([]history.Target, 0, len(svcs)+len(fns))
	for _, s := range svcs {
		out = append(out, history.Target{Kind: v1.KindService, Environment: s.Metadata.Environment, Name: s.Metadata.Name, ImageDigest: s.Status.ImageDigest})
	}
	for _, f := range fns {
		out = append(out, history.Target{Kind: v1.KindFunction, Environment: f.Metadata.Environment, Name: f.Metadata.Name, ImageDigest: f.Status.ImageDigest})
	}
	return out
}

func (h historySource) Load(env, name string) (int, int64) { return h.gateway.Load(env, name) }

func (h historySource) Instances(kind, env, name string) []v1.InstanceStatus {
	return h.backend.Instances(backend.Ref{Kind: kind, Environment: env, Name: name})
}

func (h historySource) Usage(ctx context.Context, kind, env, name string) (map[string]history.Usage, error) {
	st, err := h.backend.Stats(ctx, backend.Ref{Kind: kind, Environment: env, Name: name})
	if err != nil {
		return nil, err
	}
	out := make(map[string]history.Usage, len(st))
	for n, u := range st {
		out[n] = history.Usage{CPUNanos: u.CPUUsageNanos, MemoryBytes: u.MemoryBytes}
	}
	return out, nil
}

// adviceWorkloads gives the advisor the Services and Functions from the
// caches.
type adviceWorkloads struct {
	services  *controller.Services
	functions *controller.Functions
}

func (a adviceWorkloads) Workload(env, name string) (advisor.Workload, bool) {
	svc, sok := a.services.Peek(store.Key{Kind: v1.KindService, Environment: env, Name: name})
	fn, fok := a.functions.Peek(store.Key{Kind: v1.KindFunction, Environment: env, Name: name})
	switch {
	case sok && fok:
		// Mid-conversion: the one that was there first is how it runs.
		if fn.Metadata.CreationTimestamp.Before(svc.Metadata.CreationTimestamp) {
			return functionWorkload(fn), true
		}
		return serviceWorkload(svc), true
	case sok:
		return serviceWorkload(svc), true
	case fok:
		return functionWorkload(fn), true
	}
	return advisor.Workload{}, false
}

func (a adviceWorkloads) Workloads(env string) []advisor.Workload {
	seen := map[string]bool{}
	var out []advisor.Workload
	for _, s := range a.services.List(env) {
		if w, ok := a.Workload(s.Metadata.Environment, s.Metadata.Name); ok && !seen[w.Name] {
			seen[w.Name] = true
			out = append(out, w)
		}
	}
	for _, f := range a.functions.List(env) {
		if w, ok := a.Workload(f.Metadata.Environment, f.Metadata.Name); ok && !seen[w.Name] {
			seen[w.Name] = true
			out = append(out, w)
		}
	}
	return out
}

func serviceWorkload(s *v1.Service) advisor.Workload {
	return advisor.Workload{Kind: v1.KindService, Environment: s.Metadata.Environment, Name: s.Metadata.Name, Service: s, ImageDigest: s.Status.ImageDigest}
}

func functionWorkload(f *v1.Function) advisor.Workload {
	return advisor.Workload{Kind: v1.KindFunction, Environment: f.Metadata.Environment, Name: f.Metadata.Name, Function: f, ImageDigest: f.Status.ImageDigest}
}

// loadPriceSheet reads --price-sheet (nil: the advisor's default).
func loadPriceSheet(path string) (*v1.PriceSheet, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--price-sheet: %w", err)
	}
	s, err := v1.ParsePriceSheet(b)
	if err != nil {
		return nil, fmt.Errorf("--price-sheet %s: %w", path, err)
	}
	return &s, nil
}
