package controller

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backend"
	"berth.dev/berth/internal/informer"
	"berth.dev/berth/internal/store"
)

// Functions is the cache of Function objects.
type Functions = informer.Informer[v1.Function, *v1.Function]

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

// KeepAlives is optional on a Scaler: how many prepared standbys a
// function keeps now, and its keep-alive choice for its status.
type KeepAlives interface {
	Standbys(env, name string) int
	KeepAlive(env, name string) (*v1.KeepAliveStatus, bool)
}

// ColdStartStats reports what the activator saw of a function.
type ColdStartStats interface {
	Stats(env, name string) (inFlight int, coldStarts int64, last *v1.ColdStart)
}

// FunctionConfig is what the function controller needs.
type FunctionConfig struct {
	Store     store.Store
	Functions *Functions
	Revisions *Revisions
	Backend   Backend
	Images    ImageResolver
	Events    EventRecorder
	Scaler    Scaler
	Stats     ColdStartStats
	// OnFunctions receives every function whenever one changes (for the
	// queue's triggers).
	OnFunctions func([]*v1.Function)
	// RoutesSynced, if not nil, delays the first OnFunctions until the
	// gateway knows the functions, so deliveries do not fail with 404.
	RoutesSynced <-chan struct{}
	Logger       *slog.Logger
	Workers      int
	// ImageRetry is how soon a function whose image could not be had is
	// tried again (default 5s).
	ImageRetry time.Duration
	// Wasm runs the functions with runtime: wasm; nil refuses them (their
	// status says so). WasmModules and Values feed it.
	Wasm        WasmHost
	WasmModules WasmModules
	Values      ValueResolver
}

// FunctionController turns each Function into revisions and asks the
// backend for as many started instances as the autoscaler wants (zero when
// idle), plus one prepared standby while below the maximum, so a cold
// start only starts a task.
type FunctionController struct {
	workloads
	cfg FunctionConfig
	log *slog.Logger
	q   *queue
	// publishMu makes each OnFunctions call carry a list at least as new
	// as the previous call's.
	publishMu sync.Mutex
}

// NewFunctions builds the function controller; Run starts it.
func NewFunctions(cfg FunctionConfig) *FunctionController {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.ImageRetry == 0 {
		cfg.ImageRetry = 5 * time.Second
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	c := &FunctionController{
		workloads: workloads{
			store: cfg.Store, revisions: cfg.Revisions, backend: cfg.Backend, events: cfg.Events,
			historyLimit: 10, pulls: newPulls(cfg.Images, 0),
		},
		cfg: cfg, log: cfg.Logger, q: newQueue(),
	}
	cfg.Functions.AddHandler(func(k store.Key, old, cur *v1.Function) {
		if old != cur && cur != nil && synced(cur.Metadata, cur.Status.ObservedGeneration) &&
			(old == nil || canaryKey(old.Status.Canary) == canaryKey(cur.Status.Canary)) {
			return // our own status write
		}
		c.q.Add(k.Environment + "/" + k.Name)
	})
	cfg.Backend.Watch(func(ref backend.Ref) {
		if ref.Kind == v1.KindFunction {
			c.q.Add(ref.Environment + "/" + ref.Name)
		}
	})
	return c
}

// Enqueue asks for a sync of one function now (the autoscaler calls it
// when its decision changes).
func (c *FunctionController) Enqueue(env, name string) { c.q.Add(env + "/" + name) }

// Run syncs functions until ctx ends, once the caches are filled.
func (c *FunctionController) Run(ctx context.Context) error {
	c.pulls.run(ctx)
	if err := waitForSync(ctx, c.cfg.Functions, c.cfg.Revisions, c.cfg.Backend); err != nil {
		return nil
	}
	go func() {
		if c.cfg.RoutesSynced != nil {
			select {
			case <-ctx.Done():
				return
			case <-c.cfg.RoutesSynced:
			}
		}
		c.publish()
	}()
	runWorkers(ctx, c.q, c.cfg.Workers, c.sync, func(key string, err error) {
		logSyncError(c.log, "function", key, err)
	})
	return nil
}

func (c *FunctionController) sync(ctx context.Context, key string) error {
	env, name, _ := strings.Cut(key, "/")
	ref := backend.Ref{Kind: v1.KindFunction, Environment: env, Name: name}
	fn, err := c.cfg.Functions.Get(store.Key{Kind: v1.KindFunction, Environment: env, Name: name})
	if v1.IsNotFound(err) {
		c.cfg.Scaler.Remove(env, name)
		if c.cfg.Wasm != nil {
			c.cfg.Wasm.Remove(ctx, env, name)
		}
		c.publish()
		return c.remove(ctx, ref)
	}
	if err != nil {
		return err
	}
	if fn.Metadata.Generation != fn.Status.ObservedGeneration {
		c.publish()
	}

	wake := func() { c.q.Add(key) }
	cur, revs, err := c.currentRevision(ctx, ref, fn.Metadata.Labels, fn.Spec.Template,
		progress{fn, &fn.Status.Conditions}, wake)
	if err != nil {
		return err
	}
	if cur == nil {
		c.q.AddAfter(key, c.cfg.ImageRetry)
		return nil
	}
	if fn.IsWasm() {
		if c.cfg.Wasm == nil {
			msg := "this server does not run Wasm functions"
			if c.setCondition(ctx, progress{fn, &fn.Status.Conditions}, v1.ConditionProgressing, false, "WasmUnavailable", msg) {
				c.event(ctx, ref, "Warning", "WasmUnavailable", msg)
			}
			return nil
		}
		return c.syncWasm(ctx, key, ref, fn, cur, revs)
	}
	if c.cfg.Wasm != nil {
		// It may have been a Wasm function until this change.
		c.cfg.Wasm.Remove(ctx, env, name)
	}

	p := scaleParams(fn)
	for _, i := range c.cfg.Backend.Instances(ref) {
		if i.Ready && i.Phase != v1.PhaseTerminating {
			p.Ready++
		}
	}
	c.cfg.Scaler.Set(env, name, p)
	desired := min(max(c.cfg.Scaler.Desired(env, name), p.Min), p.Max)

	// A split shares the autoscaler's demand between its revisions; at
	// zero every revision is at zero.
	canary, started := canaryAt(fn.Spec.Strategy.Canary, fn.Spec.Traffic, fn.Status.Canary, fn.Status.Revision,
		cur.Spec.Number, revisionExists(revs), time.Now())
	traffic := fn.Spec.Traffic
	if ct := canaryTraffic(canary); ct != nil {
		traffic = ct
	}
	plan := planRevisions(traffic, revs, cur, desired, min(desired, 1))
	plan.canary = canary
	if len(plan.missing) > 0 {
		c.log.Warn("traffic names missing revisions", "function", key, "revisions", plan.missing)
	}
	// A new revision replaces all instances at once (surge = desired): a
	// function's instances are interchangeable and short-lived.
	err = c.cfg.Backend.Apply(ctx, backend.Workload{
		Ref: ref, Labels: fn.Metadata.Labels, Revision: cur,
		Replicas: plan.current, MaxSurge: max(plan.current, 1), MaxUnavailable: 0,
		Standbys: c.standbys(env, name, desired, p.Max, plan.current > 0 || len(plan.pinned) == 0),
		Pinned:   plan.pinned,
	})
	if err != nil {
		return err
	}
	insts := c.cfg.Backend.Instances(ref)
	if err := c.updateStatus(ctx, fn, cur, insts, desired, plan); err != nil {
		return err
	}
	if started {
		c.event(ctx, ref, "Normal", "CanaryStarted", fmt.Sprintf("Canary of revision %d against revision %d: %s",
			canary.Revision, canary.Stable, canary.Message))
	}
	return c.pruneRevisions(ctx, cur, revs, insts, traffic)
}

// standbys is how many prepared standbys a function keeps beside desired
// started instances: what its keep-alive says (one without it), never
// past its maximum, and none while only pinned revisions run.
func (c *FunctionController) standbys(env, name string, desired, maxInstances int, current bool) int {
	if !current {
		return 0
	}
	n := 1
	if k, ok := c.cfg.Scaler.(KeepAlives); ok {
		n = k.Standbys(env, name)
	}
	return max(min(n, maxInstances-desired), 0)
}

// functionStatus computes a function's status from its instances.
func functionStatus(fn *v1.Function, cur *v1.Revision, insts []v1.InstanceStatus, desired int, now time.Time) v1.FunctionStatus {
	st := fn.Status
	st.ObservedGeneration = fn.Metadata.Generation
	st.Revision = cur.Spec.Number
	st.ImageDigest = cur.Spec.ImageDigest
	st.Desired = int32(desired)
	st.ReadyInstances = 0
	st.Instances = slices.Clone(insts)
	for _, i := range insts {
		if i.Ready && i.Phase != v1.PhaseTerminating {
			st.ReadyInstances++
		}
	}
	reason, msg := "Scaled", fmt.Sprintf("%d of %d desired instances ready", st.ReadyInstances, desired)
	if desired == 0 && st.ReadyInstances == 0 {
		reason, msg = "ScaledToZero", "no instances: the next request starts one"
	}
	st.Conditions = putConditionAt(slices.Clone(st.Conditions), v1.ConditionProgressing, true, reason, msg, now)
	return st
}

func (c *FunctionController) updateStatus(ctx context.Context, fn *v1.Function, cur *v1.Revision, insts []v1.InstanceStatus, desired int, plan revisionPlan) error {
	st := functionStatus(fn, cur, insts, desired, time.Now())
	st.Traffic, st.Canary = plan.traffic, plan.canary
	if c.cfg.Stats != nil {
		inFlight, cold, last := c.cfg.Stats.Stats(fn.Metadata.Environment, fn.Metadata.Name)
		st.InFlight, st.ColdStarts = int32(inFlight), cold
		if last != nil {
			st.LastColdStart = last
		}
	}
	if k, ok := c.cfg.Scaler.(KeepAlives); ok {
		if ka, ok := k.KeepAlive(fn.Metadata.Environment, fn.Metadata.Name); ok {
			st.KeepAlive = ka
		}
	}
	if jsonEqual(fn.Status, st) {
		return nil
	}
	fn.Status = st
	return store.Update(ctx, c.cfg.Store, fn)
}

// publish hands every function to OnFunctions (level-triggered).
func (c *FunctionController) publish() {
	if c.cfg.OnFunctions == nil {
		return
	}
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	fns := c.cfg.Functions.List("")
	slices.SortFunc(fns, func(a, b *v1.Function) int {
		return strings.Compare(a.Metadata.Environment+"/"+a.Metadata.Name, b.Metadata.Environment+"/"+b.Metadata.Name)
	})
	c.cfg.OnFunctions(fns)
}

// scaleParams reads a function's scaling settings with their defaults.
func scaleParams(fn *v1.Function) ScaleParams {
	p := ScaleParams{
		Concurrency:       int(fn.Spec.Concurrency),
		TargetUtilization: ptrOr(fn.Spec.Scale.TargetUtilization, 0.7),
		Min:               int(ptrOr(fn.Spec.Scale.Min, 0)),
		Max:               int(ptrOr(fn.Spec.Scale.Max, 10)),
		// Unset: the autoscaler learns it from the function's idle gaps.
		IdleTimeout: 0,
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
