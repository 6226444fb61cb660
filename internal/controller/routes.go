package controller

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
	"berth.dev/berth/internal/store"
)

// RouteTable receives the whole routing table on every change. The
// gateway implements it.
type RouteTable interface {
	SetTargets([]gateway.Target)
}

// EndpointID names an instance's endpoint in the gateway: the same ID the
// agent uses for its container, so the agent can drain it by that name.
type EndpointID func(env, instance string) string

// Routes keeps the gateway's table in step with services and their ready
// instances. A new instance gets traffic only once its status says ready; an
// instance being drained is taken out by the agent through the gateway
// before its status changes, so the two never race.
type Routes struct {
	Store      store.Store
	Table      RouteTable
	EndpointID EndpointID
	Logger     *slog.Logger
	// Synced, if not nil, is closed after the first table is in place.
	Synced chan struct{}
}

// Run rebuilds the table on every change of a service or an instance.
func (r *Routes) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		rev, err := r.rebuild(ctx)
		if err != nil {
			log.Warn("routes rebuild failed", "err", err)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		if r.Synced != nil {
			close(r.Synced)
			r.Synced = nil
		}
		events, err := r.Store.Watch(ctx, "", rev)
		if err != nil {
			continue
		}
		dirty := false
		for {
			var ev store.Event
			var ok bool
			if dirty {
				// Coalesce a burst of events into one rebuild.
				select {
				case ev, ok = <-events:
				default:
					if _, err := r.rebuild(ctx); err != nil {
						log.Warn("routes rebuild failed", "err", err)
					}
					dirty = false
					continue
				}
			} else {
				ev, ok = <-events
			}
			if !ok {
				break
			}
			if k := ev.Record.Key.Kind; k == v1.KindService || k == v1.KindFunction || k == v1.KindInstance {
				dirty = true
			}
		}
	}
	return nil
}

func (r *Routes) rebuild(ctx context.Context) (uint64, error) {
	svcs, rev, err := store.List[v1.Service](ctx, r.Store, v1.KindService, "")
	if err != nil {
		return 0, err
	}
	fns, _, err := store.List[v1.Function](ctx, r.Store, v1.KindFunction, "")
	if err != nil {
		return 0, err
	}
	insts, _, err := store.List[v1.Instance](ctx, r.Store, v1.KindInstance, "")
	if err != nil {
		return 0, err
	}
	type owner struct{ kind, env, name string }
	eps := map[owner][]gateway.Endpoint{}
	for _, i := range insts {
		st := i.Status
		if i.Spec.Draining || !st.Ready || st.IP == "" || st.Port == 0 {
			continue
		}
		o := owner{i.Spec.OwnerKind, i.Metadata.Environment, i.Spec.Owner}
		eps[o] = append(eps[o], gateway.Endpoint{
			ID:       r.EndpointID(i.Metadata.Environment, i.Metadata.Name),
			Address:  net.JoinHostPort(st.IP, strconv.Itoa(int(st.Port))),
			Revision: i.Spec.Revision,
		})
	}
	targets := make([]gateway.Target, 0, len(svcs)+len(fns))
	for _, s := range svcs {
		t := gateway.Target{
			Environment: s.Metadata.Environment,
			Name:        s.Metadata.Name,
			Kind:        v1.KindService,
			Endpoints:   eps[owner{v1.KindService, s.Metadata.Environment, s.Metadata.Name}],
		}
		if s.Spec.Route != nil {
			t.RoutePath = s.Spec.Route.Path
			t.StripPrefix = s.Spec.Route.StripPrefix
		}
		targets = append(targets, t)
	}
	for _, f := range fns {
		t := gateway.Target{
			Environment: f.Metadata.Environment,
			Name:        f.Metadata.Name,
			Kind:        v1.KindFunction,
			Concurrency: int(max(f.Spec.Concurrency, 1)),
			Timeout:     FunctionTimeout(f),
			Endpoints:   eps[owner{v1.KindFunction, f.Metadata.Environment, f.Metadata.Name}],
		}
		if f.Spec.Route != nil {
			t.RoutePath = f.Spec.Route.Path
			t.StripPrefix = f.Spec.Route.StripPrefix
		}
		targets = append(targets, t)
	}
	r.Table.SetTargets(targets)
	return rev, nil
}
