package controller

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/store"
)

// RouteTable receives the whole routing table on every change. The
// gateway (through the activator) implements it.
type RouteTable interface {
	SetTargets([]gateway.Target)
}

// InstanceSource is what the routes need of a backend.
type InstanceSource interface {
	Instances(ref backend.Ref) []v1.InstanceStatus
	Watch(fn func(backend.Ref))
	WaitForSync(ctx context.Context) error
}

// WasmEndpoints is what the routes need of the Wasm host: which functions
// have a compiled module, and the in-process transport that serves them.
type WasmEndpoints interface {
	Ready(env, name string) (revision int64, ok bool)
	Transport(env, name string) http.RoundTripper
	Watch(fn func(env, name string))
}

// RoutesConfig configures the routes controller.
type RoutesConfig struct {
	Services  *Services
	Functions *Functions
	Backend   InstanceSource
	Table     RouteTable
	// Wasm, when set, serves the functions with runtime: wasm.
	Wasm   WasmEndpoints
	Logger *slog.Logger
	// Synced, if not nil, is closed after the first table is in place.
	Synced chan struct{}
}

// Routes keeps the gateway's table in step with services, functions and
// their ready instances, read from the caches. A new instance gets traffic
// only once the backend reports it ready; an instance being drained is
// taken out through the gateway before its status changes, so the two
// never race. A burst of changes makes one rebuild.
type Routes struct {
	cfg   RoutesConfig
	dirty chan struct{}

	mu     sync.Mutex
	routed map[string]gateway.Target // "env/name" → the target last pushed
	// olderOnTie is, per "env/name" held by a Service and a Function
	// created within the same second, the kind that held it first (only
	// push touches it).
	olderOnTie map[string]string
	// takenOver is, per "env/name" held by both kinds, the newer kind once
	// it has been routed (only push touches it).
	takenOver map[string]string
}

// NewRoutes builds the routes controller; Run starts it.
func NewRoutes(cfg RoutesConfig) *Routes {
	r := &Routes{cfg: cfg, dirty: make(chan struct{}, 1)}
	cfg.Services.AddHandler(func(_ store.Key, old, cur *v1.Service) { r.poke() })
	cfg.Functions.AddHandler(func(_ store.Key, old, cur *v1.Function) { r.poke() })
	cfg.Backend.Watch(func(backend.Ref) { r.poke() })
	if cfg.Wasm != nil {
		cfg.Wasm.Watch(func(string, string) { r.poke() })
	}
	return r
}

func (r *Routes) poke() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// Run rebuilds the table after every change until ctx ends.
func (r *Routes) Run(ctx context.Context) error {
	if err := waitForSync(ctx, r.cfg.Services, r.cfg.Functions, r.cfg.Backend); err != nil {
		return nil
	}
	r.push()
	if r.cfg.Synced != nil {
		close(r.cfg.Synced)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty:
			r.push()
		}
	}
}

func (r *Routes) push() {
	r.mu.Lock()
	prev := r.routed
	r.mu.Unlock()
	ts := r.targets(prev)
	r.cfg.Table.SetTargets(ts)
	routed := make(map[string]gateway.Target, len(ts))
	for _, t := range ts {
		routed[t.Environment+"/"+t.Name] = t
	}
	r.mu.Lock()
	r.routed = routed
	r.mu.Unlock()
}

// Routed is the target the gateway serves env/name with, as last pushed
// (its kind and ready endpoints); false when it has none.
func (r *Routes) Routed(env, name string) (gateway.Target, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.routed[env+"/"+name]
	return t, ok
}

// targets builds the whole table from the caches; prev is the last one
// pushed.
func (r *Routes) targets(prev map[string]gateway.Target) []gateway.Target {
	svcs := r.cfg.Services.List("")
	fns := r.cfg.Functions.List("")
	targets := make([]gateway.Target, 0, len(svcs)+len(fns))
	created := make(map[string]time.Time, len(svcs)+len(fns))
	for _, s := range svcs {
		created[v1.KindService+"/"+s.Metadata.Environment+"/"+s.Metadata.Name] = s.Metadata.CreationTimestamp
		t := gateway.Target{
			Environment: s.Metadata.Environment,
			Name:        s.Metadata.Name,
			Kind:        v1.KindService,
			Endpoints:   r.endpoints(backend.Ref{Kind: v1.KindService, Environment: s.Metadata.Environment, Name: s.Metadata.Name}),
		}
		if s.Spec.Route != nil {
			t.RoutePath = s.Spec.Route.Path
			t.StripPrefix = s.Spec.Route.StripPrefix
		}
		t.Sticky = s.Spec.StickySessions
		t.Split, t.Tags = gatewaySplit(s.Status.Traffic)
		targets = append(targets, t)
	}
	for _, f := range fns {
		created[v1.KindFunction+"/"+f.Metadata.Environment+"/"+f.Metadata.Name] = f.Metadata.CreationTimestamp
		t := gateway.Target{
			Environment: f.Metadata.Environment,
			Name:        f.Metadata.Name,
			Kind:        v1.KindFunction,
			Concurrency: int(max(f.Spec.Concurrency, 1)),
			Timeout:     FunctionTimeout(f),
			Endpoints:   r.endpoints(backend.Ref{Kind: v1.KindFunction, Environment: f.Metadata.Environment, Name: f.Metadata.Name}),
		}
		if f.Spec.Route != nil {
			t.RoutePath = f.Spec.Route.Path
			t.StripPrefix = f.Spec.Route.StripPrefix
		}
		t.Sticky = f.Spec.StickySessions
		t.Split, t.Tags = gatewaySplit(f.Status.Traffic)
		if f.IsWasm() {
			r.wasmTarget(f, &t)
		}
		targets = append(targets, t)
	}
	if r.olderOnTie == nil {
		r.olderOnTie, r.takenOver = map[string]string{}, map[string]string{}
	}
	targets = onePerName(targets, created, prev, r.olderOnTie, r.takenOver)
	// A stable order, so equal tables compare equal.
	slices.SortFunc(targets, func(a, b gateway.Target) int {
		return cmp.Or(strings.Compare(a.Environment, b.Environment), strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
	})
	return targets
}

func (r *Routes) endpoints(ref backend.Ref) []gateway.Endpoint {
	var eps []gateway.Endpoint
	for _, i := range r.cfg.Backend.Instances(ref) {
		if !backend.Ready(i) {
			continue
		}
		eps = append(eps, gateway.Endpoint{
			ID:       backend.EndpointID(ref.Environment, i.Name),
			Address:  net.JoinHostPort(i.IP, strconv.Itoa(int(i.Port))),
			Revision: i.Revision,
		})
	}
	return eps
}

// onePerName keeps one target per environment and name. A Service and a
// Function share a name only while `berth convert` switches one into the
// other: the older keeps the host and the route until the newer has a
// ready instance, so no request finds the newer one cold. (Creation times
// are to the second: on a tie the older is the one routed when the two
// were first seen together, remembered in olderOnTie; deciding it from the
// last table alone flipped the route at every push.) Once routed, the
// newer keeps the route for as long as both exist, remembered in
// takenOver: a conversion deletes the older as soon as the newer is
// routed, and a newer one that reports no ready endpoint for a moment (an
// instance draining in a scale-down, a function at zero that the
// activator wakes) must not hand the route back to one being deleted.
func onePerName(ts []gateway.Target, created map[string]time.Time, prev map[string]gateway.Target, olderOnTie, takenOver map[string]string) []gateway.Target {
	byName := make(map[string]int, len(ts))
	out := ts[:0]
	both := map[string]bool{}
	defer func() {
		for _, m := range []map[string]string{olderOnTie, takenOver} {
			for k := range m {
				if !both[k] {
					delete(m, k) // one of the two is gone
				}
			}
		}
	}()
	for _, t := range ts {
		k := t.Environment + "/" + t.Name
		i, dup := byName[k]
		if !dup {
			byName[k] = len(out)
			out = append(out, t)
			continue
		}
		both[k] = true
		old, cur := out[i], t
		oc, cc := created[old.Kind+"/"+k], created[cur.Kind+"/"+k]
		swap := cc.Before(oc)
		if cc.Equal(oc) {
			first, ok := olderOnTie[k]
			if !ok {
				first = prev[k].Kind
				if first == "" {
					first = old.Kind
				}
				olderOnTie[k] = first
			}
			swap = cur.Kind == first
		}
		if swap {
			old, cur = cur, old
		}
		switch {
		case takenOver[k] == cur.Kind:
			out[i] = cur
		case len(cur.Endpoints) > 0:
			out[i] = cur
			takenOver[k] = cur.Kind
		default:
			out[i] = old
		}
	}
	return out
}

// wasmTarget serves a Wasm function from one in-process endpoint that
// runs a fresh instance per request, up to concurrency × max at once: the
// most requests a container function of the same settings serves.
func (r *Routes) wasmTarget(f *v1.Function, t *gateway.Target) {
	t.Endpoints = nil
	if r.cfg.Wasm == nil {
		return
	}
	env, name := f.Metadata.Environment, f.Metadata.Name
	rev, ok := r.cfg.Wasm.Ready(env, name)
	if !ok {
		return // the activator holds requests until the module is compiled
	}
	t.Concurrency = scaleParams(f).Concurrency * scaleParams(f).Max
	t.Endpoints = []gateway.Endpoint{{
		ID:        backend.EndpointID(env, name+"-wasm"),
		Address:   "wasm:" + name + "-r" + strconv.FormatInt(rev, 10),
		Revision:  rev,
		Transport: r.cfg.Wasm.Transport(env, name),
	}}
}
