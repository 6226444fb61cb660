package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/store"
)

// ScaleParams is what the autoscaler needs to know of a function.
type ScaleParams struct {
	Concurrency       int
	TargetUtilization float64
	Min, Max          int
	IdleTimeout       time.Duration
	// Ready is how many instances are ready now: the starting point after
	// a restart, so a busy function is not scaled to zero in its first
	// window.
	Ready int
}

// Scaler decides how many instances each function should have.
type Scaler interface {
	Set(env, name string, p ScaleParams)
	Remove(env, name string)
	Desired(env, name string) int
}

// ColdStartStats reports what the activator saw of a function.
type ColdStartStats interface {
	Stats(env, name string) (inFlight int, coldStarts int64, last *v1.ColdStart)
}

// FunctionConfig is what the function controller needs.
type FunctionConfig struct {
	Store  store.Store
	Images ImageResolver
	Events EventRecorder
	Scaler Scaler
	Stats  ColdStartStats
	// OnFunctions receives every function whenever one changes (for the
	// queue's triggers).
	OnFunctions func([]*v1.Function)
	// RoutesSynced, if not nil, delays the first OnFunctions until the
	// gateway knows the functions, so deliveries do not fail with 404.
	RoutesSynced <-chan struct{}
	Logger       *slog.Logger
	Workers      int
}

// Functions turns each Function into revisions and instances: as many
// started instances as the autoscaler wants (zero when idle), plus one
// standby (network attached, task created, not started) of the current
// revision, so a cold start only starts a task.
type Functions struct {
	workloads
	cfg FunctionConfig
	log *slog.Logger
	q   *queue
	// publishMu makes each OnFunctions call carry a list at least as new
	// as the previous call's.
	publishMu sync.Mutex
}

func NewFunctions(cfg FunctionConfig) *Functions {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Events == nil {
		cfg.Events = func(context.Context, store.Store, string, string, string, string, string) {}
	}
	return &Functions{
		workloads: workloads{store: cfg.Store, images: cfg.Images, events: cfg.Events, historyLimit: 10},
		cfg:       cfg, log: cfg.Logger, q: newQueue(),
	}
}

// Enqueue asks for a sync of one function now (the autoscaler calls it
// when its decision changes).
func (c *Functions) Enqueue(env, name string) { c.q.Add(env + "/" + name) }

// Run syncs functions until ctx ends.
func (c *Functions) Run(ctx context.Context) error {
	go feed(ctx, c.cfg.Store, v1.KindFunction, c.q)
	go func() {
		if c.cfg.RoutesSynced != nil {
			select {
			case <-ctx.Done():
				return
			case <-c.cfg.RoutesSynced:
			}
		}
		c.publish(ctx)
	}()
	runWorkers(ctx, c.q, c.cfg.Workers, c.sync, func(key string, err error) {
		c.log.Warn("sync failed; will retry", "function", key, "err", err)
	})
	return nil
}

func (c *Functions) sync(ctx context.Context, key string) error {
	env, name, _ := strings.Cut(key, "/")
	o := owner{Kind: v1.KindFunction, Env: env, Name: name}
	var fn v1.Function
	err := store.Get(ctx, c.cfg.Store, store.Key{Kind: v1.KindFunction, Environment: env, Name: name}, &fn)
	if v1.IsNotFound(err) {
		c.cfg.Scaler.Remove(env, name)
		c.publish(ctx)
		return c.cleanup(ctx, o)
	}
	if err != nil {
		return err
	}
	o.Labels = fn.Metadata.Labels
	if fn.Metadata.Generation != fn.Status.ObservedGeneration {
		c.publish(ctx)
	}

	cur, revs, err := c.currentRevision(ctx, o, fn.Spec.Template, progress{&fn, &fn.Status.Conditions, &fn.Status.ObservedGeneration})
	if err != nil {
		return err
	}
	if cur == nil {
		c.q.AddAfter(key, 5*time.Second)
		return nil
	}

	insts, err := c.instances(ctx, o)
	if err != nil {
		return err
	}
	p := scaleParams(&fn)
	for _, i := range insts {
		if !i.Spec.Draining && !i.Spec.Standby && i.Status.Ready {
			p.Ready++
		}
	}
	c.cfg.Scaler.Set(env, name, p)
	desired := min(max(c.cfg.Scaler.Desired(env, name), p.Min), p.Max)

	if err := c.scale(ctx, o, cur, insts, desired, p.Max); err != nil {
		return err
	}
	if insts, err = c.instances(ctx, o); err != nil {
		return err
	}
	if err := c.updateStatus(ctx, &fn, cur, insts, desired); err != nil {
		return err
	}
	return c.pruneRevisions(ctx, cur, revs, insts)
}

// scale moves the function's instances one step towards desired started
// instances of cur, using a standby for a new instance when there is one,
// and keeps one standby of cur prepared while below max.
func (c *Functions) scale(ctx context.Context, o owner, cur *v1.Revision, insts []*v1.Instance, desired, maxInstances int) error {
	var active, standby []*v1.Instance
	for _, i := range insts {
		switch {
		case i.Spec.Draining:
		case i.Spec.Standby && i.Spec.Revision == cur.Spec.Number && i.Status.Phase != v1.PhaseFailed:
			standby = append(standby, i)
		case i.Spec.Standby:
			// A standby of an older revision (or one that cannot be
			// prepared) is of no use.
			if err := c.drain(ctx, i, true); err != nil {
				return err
			}
		default:
			active = append(active, i)
		}
	}
	// A new revision replaces all instances at once (surge = desired):
	// a function's instances are interchangeable and short-lived.
	plan := planRollout(rolloutLimits{Desired: desired, MaxSurge: max(desired, 1), MaxUnavailable: 0}, cur.Spec.Number, active)
	for _, i := range plan.Drain {
		if err := c.drain(ctx, i, true); err != nil {
			return err
		}
	}
	// Prepared standbys first: a started standby skips network set-up and
	// container creation.
	sort.Slice(standby, func(a, b int) bool {
		return standby[a].Status.Phase == v1.PhaseStandby && standby[b].Status.Phase != v1.PhaseStandby
	})
	for n := 0; n < plan.Create; n++ {
		if len(standby) > 0 {
			s := standby[0]
			standby = standby[1:]
			s.Spec.Standby = false
			if err := store.Update(ctx, c.cfg.Store, s); err == nil {
				continue
			} else if !v1.IsConflict(err) && !v1.IsNotFound(err) {
				return err
			}
		}
		if _, err := c.createInstance(ctx, o, cur, false); err != nil {
			return err
		}
	}
	want := 0
	if len(active)-len(plan.Drain)+plan.Create < maxInstances {
		want = 1
	}
	for len(standby) < want {
		s, err := c.createInstance(ctx, o, cur, true)
		if err != nil {
			return err
		}
		standby = append(standby, s)
	}
	for _, s := range standby[want:] {
		if err := c.drain(ctx, s, true); err != nil {
			return err
		}
	}
	return nil
}

func (c *Functions) updateStatus(ctx context.Context, fn *v1.Function, cur *v1.Revision, insts []*v1.Instance, desired int) error {
	st := fn.Status
	st.ObservedGeneration = fn.Metadata.Generation
	st.Revision = cur.Spec.Number
	st.ImageDigest = cur.Spec.ImageDigest
	st.Desired = int32(desired)
	st.ReadyInstances = 0
	st.Instances = nil
	sort.Slice(insts, func(a, b int) bool { return insts[a].Metadata.Name < insts[b].Metadata.Name })
	for _, i := range insts {
		s := i.Status
		s.Name, s.Revision = i.Metadata.Name, i.Spec.Revision
		if i.Spec.Draining {
			s.Phase, s.Ready = v1.PhaseTerminating, false
		}
		st.Instances = append(st.Instances, s)
		if !i.Spec.Draining && !i.Spec.Standby && i.Status.Ready {
			st.ReadyInstances++
		}
	}
	if c.cfg.Stats != nil {
		inFlight, cold, last := c.cfg.Stats.Stats(fn.Metadata.Environment, fn.Metadata.Name)
		st.InFlight, st.ColdStarts = int32(inFlight), cold
		if last != nil {
			st.LastColdStart = last
		}
	}
	reason, msg := "Scaled", fmt.Sprintf("%d of %d desired instances ready", st.ReadyInstances, desired)
	if desired == 0 && st.ReadyInstances == 0 {
		reason, msg = "ScaledToZero", "no instances: the next request starts one"
	}
	st.Conditions = putCondition(slices.Clone(st.Conditions), v1.ConditionProgressing, true, reason, msg)
	if jsonEqual(fn.Status, st) {
		return nil
	}
	fn.Status = st
	return store.Update(ctx, c.cfg.Store, fn)
}

// publish hands every function to OnFunctions (level-triggered).
func (c *Functions) publish(ctx context.Context) {
	if c.cfg.OnFunctions == nil {
		return
	}
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	fns, _, err := store.List[v1.Function](ctx, c.cfg.Store, v1.KindFunction, "")
	if err != nil {
		c.log.Warn("list functions", "err", err)
		return
	}
	c.cfg.OnFunctions(fns)
}

// scaleParams reads a function's scaling settings with their defaults.
func scaleParams(fn *v1.Function) ScaleParams {
	p := ScaleParams{
		Concurrency:       int(fn.Spec.Concurrency),
		TargetUtilization: ptrOr(fn.Spec.Scale.TargetUtilization, 0.7),
		Min:               int(ptrOr(fn.Spec.Scale.Min, 0)),
		Max:               int(ptrOr(fn.Spec.Scale.Max, 10)),
		IdleTimeout:       60 * time.Second,
	}
	if p.Concurrency < 1 {
		p.Concurrency = 1
	}
	if d, err := time.ParseDuration(fn.Spec.Scale.IdleTimeout); err == nil && d > 0 {
		p.IdleTimeout = d
	}
	return p
}

// FunctionTimeout is a function's invocation timeout with its default.
func FunctionTimeout(fn *v1.Function) time.Duration {
	if d, err := time.ParseDuration(fn.Spec.Timeout); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}
