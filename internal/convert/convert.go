// Package convert switches a workload from a Service to a Function or
// back, without failing a request: the new one is created beside the old,
// and the old is deleted only once the new one is ready and the gateway
// routes to it (the routes controller keeps the older of two same-named
// workloads routed until the newer has a ready instance). Name,
// environment, labels, the template (image, command, env and secret
// references, files, port, resources, probes) and the route are kept.
//
// It owns the sequence of a conversion, not its steps: objects are
// written through the API server's own admission (defaults, validation,
// limits, quota), so a conversion is refused where an apply would be; the
// controllers, backend and gateway do the rest as for any apply.
package convert

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/gateway"
)

// DefaultTimeout bounds the wait for the new workload to be ready and
// routed.
const DefaultTimeout = 2 * time.Minute

// Objects is how a conversion reads and writes workloads: the API
// server's, with its admission.
type Objects interface {
	// Get returns the stored Service or Function (NotFound if none).
	Get(ctx context.Context, kind, env, name string) (v1.Object, error)
	// Apply creates or updates obj as `berth apply` would and returns it
	// as stored.
	Apply(ctx context.Context, obj v1.Object) (v1.Object, error)
	// Delete deletes a Service or Function.
	Delete(ctx context.Context, kind, env, name string) error
}

// Routes says what the gateway serves a name with (*controller.Routes).
type Routes interface {
	Routed(env, name string) (gateway.Target, bool)
}

// EventRecorder records an Event about an object ("Kind/name").
type EventRecorder interface {
	Record(ctx context.Context, env, object, typ, reason, msg string)
}

// Config builds a Converter.
type Config struct {
	Routes Routes
	Events EventRecorder
	// Backend is the backend's name: on "kubernetes" a Service and a
	// Function of one name would share a Deployment, so conversions are
	// refused there.
	Backend string
	// Poll is how often readiness is looked at (default 100 ms).
	Poll   time.Duration
	Clock  func() time.Time
	Logger *slog.Logger
}

// Converter switches workloads between the two kinds.
type Converter struct {
	cfg Config
	log *slog.Logger
}

// New returns a Converter.
func New(cfg Config) *Converter {
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Converter{cfg: cfg, log: cfg.Logger}
}

// Convert switches env/name, now of kind from, to req.To. It returns once
// the old workload is deleted (its instances then drain), or with an
// error after which the old one still serves: a new one that did not get
// ready in time is deleted again.
func (c *Converter) Convert(ctx context.Context, objs Objects, from, env, name string, req v1.ConvertRequest) (v1.ConvertResult, error) {
	to, err := kindOf(req.To)
	if err != nil {
		return v1.ConvertResult{}, err
	}
	if to == from {
		return v1.ConvertResult{}, v1.Conflict("%s %s is already a %s", strings.ToLower(from), name, from)
	}
	if c.cfg.Backend == "kubernetes" {
		return v1.ConvertResult{}, v1.Unavailable("berth convert is not available on the kubernetes backend yet: a Service and a Function of one name would share one Deployment there; delete %s and apply it as a %s instead", name, to)
	}
	timeout := DefaultTimeout
	if req.Timeout != "" {
		if timeout, err = time.ParseDuration(req.Timeout); err != nil || timeout <= 0 {
			return v1.ConvertResult{}, v1.FieldError("timeout", "%q is not a positive Go duration", req.Timeout)
		}
	}
	old, err := objs.Get(ctx, from, env, name)
	if v1.IsNotFound(err) {
		if _, terr := objs.Get(ctx, to, env, name); terr == nil {
			return v1.ConvertResult{}, v1.Conflict("%s is already a %s", name, to)
		}
		return v1.ConvertResult{}, v1.NotFound("no %s %q in environment %q", from, name, env)
	}
	if err != nil {
		return v1.ConvertResult{}, err
	}
	if err := convertible(old, to); err != nil {
		return v1.ConvertResult{}, err
	}
	start := c.cfg.Clock()
	res := v1.ConvertResult{From: from, To: to}
	step := func(format string, args ...any) {
		s := fmt.Sprintf("%5.2fs ", c.cfg.Clock().Sub(start).Seconds()) + fmt.Sprintf(format, args...)
		res.Steps = append(res.Steps, s)
		c.log.Info("convert", "environment", env, "name", name, "to", to, "step", s)
	}

	// A new one already there is a conversion that was interrupted: it is
	// finished, not started again.
	cur, err := objs.Get(ctx, to, env, name)
	final, bridge, want := build(old, to, req)
	switch {
	case err == nil:
		step("found %s %s already there: finishing its conversion", strings.ToLower(to), name)
		want = 1
	case v1.IsNotFound(err):
		if cur, err = objs.Apply(ctx, bridge); err != nil {
			return v1.ConvertResult{}, fmt.Errorf("create %s %s: %w", strings.ToLower(to), name, err)
		}
		step("created %s %s%s", strings.ToLower(to), name, bridgeNote(bridge, final))
	default:
		return v1.ConvertResult{}, err
	}

	// From here the conversion finishes or is undone even if the caller
	// goes away: half a conversion would leave two workloads running.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout+30*time.Second)
	defer cancel()
	ready, err := c.waitReady(work, objs, to, env, name, want, timeout)
	if err != nil {
		why := err.Error()
		if derr := objs.Delete(work, to, env, name); derr != nil && !v1.IsNotFound(derr) {
			why += fmt.Sprintf("; removing it again failed too: %v", derr)
		}
		return v1.ConvertResult{}, v1.Unavailable("%s %s was not ready and routed within %v, so it was removed and %s %s keeps serving: %s",
			strings.ToLower(to), name, timeout, strings.ToLower(from), name, why)
	}
	step("%s ready (%d ready) and routed by the gateway", strings.ToLower(to), ready)
	if err := objs.Delete(work, from, env, name); err != nil && !v1.IsNotFound(err) {
		return v1.ConvertResult{}, fmt.Errorf("%s %s is ready and routed, but deleting %s %s failed (both run; delete it by hand): %w",
			strings.ToLower(to), name, strings.ToLower(from), name, err)
	}
	step("deleted %s %s: its instances drain and stop", strings.ToLower(from), name)
	if final != nil {
		if cur, err = c.settle(work, objs, to, env, name, final); err != nil {
			return v1.ConvertResult{}, fmt.Errorf("%s %s runs and serves, but setting its final scale failed: %w", strings.ToLower(to), name, err)
		}
		step("set %s's scale to %s", name, scaleWords(final))
	}
	if c.cfg.Events != nil {
		c.cfg.Events.Record(work, env, to+"/"+name, "Normal", "Converted",
			fmt.Sprintf("Converted from a %s: ready and routed after %.1fs, then the %s was deleted", from, c.cfg.Clock().Sub(start).Seconds(), from))
	}
	res.Object = cur
	return res, nil
}

func kindOf(s string) (string, error) {
	switch strings.ToLower(s) {
	case "function", "functions":
		return v1.KindFunction, nil
	case "service", "services":
		return v1.KindService, nil
	}
	return "", v1.FieldError("to", "%q is neither function nor service", s)
}

// convertible says what keeps old from being the other kind.
func convertible(old v1.Object, to string) error {
	switch o := old.(type) {
	case *v1.Service:
		if len(o.Spec.Volumes) > 0 {
			var vs []string
			for _, v := range o.Spec.Volumes {
				vs = append(vs, v.Name+" at "+v.MountPath)
			}
			return v1.Invalid("service %s mounts volumes (%s): a Function is stateless and cannot; keep it a Service, or move the state out and remove the volumes first",
				o.Metadata.Name, strings.Join(vs, ", "))
		}
	case *v1.Function:
		if len(o.Spec.Triggers) > 0 {
			return v1.Invalid("function %s has triggers (cron or topic): a Service cannot be triggered; remove spec.triggers first", o.Metadata.Name)
		}
	}
	return nil
}

// build makes the new workload from the old one: final is what it ends
// as (nil when that is what is created), bridge what is created (a
// Function kept at the Service's ready count until the switch), and want
// the ready instances to wait for.
func build(old v1.Object, to string, req v1.ConvertRequest) (final, bridge v1.Object, want int) {
	md := old.GetMetadata()
	meta := v1.ObjectMeta{Name: md.Name, Environment: md.Environment, Labels: md.Labels}
	switch o := old.(type) {
	case *v1.Service:
		t := o.Spec.Template
		t.TerminationGracePeriodSeconds = keepUnlessDefault(t.TerminationGracePeriodSeconds, v1.DefaultTerminationGracePeriodSeconds)
		fn := &v1.Function{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindFunction},
			Metadata: meta,
			Spec:     v1.FunctionSpec{Template: t, Route: o.Spec.Route},
		}
		if req.Concurrency != nil {
			fn.Spec.Concurrency = *req.Concurrency
		}
		fn.Spec.Scale = v1.FunctionScale{Min: req.Min, Max: req.Max, IdleTimeout: req.IdleTimeout}
		v1.SetDefaults(fn)
		// Until the switch the function keeps as many instances as the
		// service has ready, so the load it takes over finds them warm.
		min := *fn.Spec.Scale.Min
		bridgeN := max(min, o.Status.ReadyReplicas, 1)
		bridgeN = minInt32(bridgeN, *fn.Spec.Scale.Max)
		if bridgeN == min {
			return nil, fn, int(bridgeN)
		}
		b := *fn
		b.Spec.Scale.Min = &bridgeN
		return fn, &b, int(bridgeN)
	case *v1.Function:
		t := o.Spec.Template
		t.TerminationGracePeriodSeconds = keepUnlessDefault(t.TerminationGracePeriodSeconds, v1.DefaultFunctionTerminationGracePeriodSeconds)
		replicas := max(o.Status.ReadyInstances, 1)
		if o.Spec.Scale.Min != nil {
			replicas = max(replicas, *o.Spec.Scale.Min)
		}
		if req.Replicas != nil {
			replicas = max(*req.Replicas, 1)
		}
		svc := &v1.Service{
			TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindService},
			Metadata: meta,
			Spec:     v1.ServiceSpec{Replicas: &replicas, Template: t, Route: o.Spec.Route},
		}
		return nil, svc, int(replicas)
	}
	return nil, nil, 0
}

func minInt32(a, b int32) int32 {
	if a < b {
		return a
	}
	return b
}

// keepUnlessDefault drops a grace period equal to the old kind's default,
// so the new kind's default applies.
func keepUnlessDefault(p *int64, def int64) *int64 {
	if p == nil || *p == def {
		return nil
	}
	return p
}

func bridgeNote(bridge, final v1.Object) string {
	if fn, ok := bridge.(*v1.Function); ok && final != nil {
		return fmt.Sprintf(" with min %d until the switch", *fn.Spec.Scale.Min)
	}
	if svc, ok := bridge.(*v1.Service); ok {
		return fmt.Sprintf(" with %d replicas", *svc.Spec.Replicas)
	}
	return ""
}

func scaleWords(final v1.Object) string {
	fn := final.(*v1.Function)
	return fmt.Sprintf("min %d, max %d", *fn.Spec.Scale.Min, *fn.Spec.Scale.Max)
}

// waitReady waits until the new workload has want ready instances and
// the gateway routes the name to it, and returns the ready count. It
// fails early when the workload reports it cannot start.
func (c *Converter) waitReady(ctx context.Context, objs Objects, kind, env, name string, want int, timeout time.Duration) (int, error) {
	deadline := c.cfg.Clock().Add(timeout)
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	last := "nothing reported yet"
	for {
		obj, err := objs.Get(ctx, kind, env, name)
		if err != nil {
			return 0, err
		}
		ready, why := readiness(obj)
		if why != "" {
			last = why
		}
		routed, ok := c.cfg.Routes.Routed(env, name)
		if ready >= want && ok && routed.Kind == kind && len(routed.Endpoints) > 0 {
			return ready, nil
		}
		if fatal := failure(obj); fatal != "" {
			return 0, fmt.Errorf("%s", fatal)
		}
		if c.cfg.Clock().After(deadline) {
			return 0, fmt.Errorf("%d of %d ready; last: %s", ready, want, last)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// readiness is the workload's ready count and what its status says.
func readiness(obj v1.Object) (int, string) {
	var conds []v1.Condition
	var insts []v1.InstanceStatus
	ready := 0
	switch o := obj.(type) {
	case *v1.Service:
		ready, conds, insts = int(o.Status.ReadyReplicas), o.Status.Conditions, o.Status.Instances
	case *v1.Function:
		ready, conds, insts = int(o.Status.ReadyInstances), o.Status.Conditions, o.Status.Instances
	}
	var why []string
	for _, cd := range conds {
		if cd.Message != "" {
			why = append(why, cd.Reason+": "+cd.Message)
		}
	}
	for _, i := range insts {
		if i.Message != "" {
			why = append(why, "instance "+i.Name+": "+i.Message)
		}
	}
	return ready, strings.Join(why, "; ")
}

// failure is a status that will not get better by waiting: an image that
// cannot be had, an instance that cannot start.
func failure(obj v1.Object) string {
	var conds []v1.Condition
	var insts []v1.InstanceStatus
	switch o := obj.(type) {
	case *v1.Service:
		conds, insts = o.Status.Conditions, o.Status.Instances
	case *v1.Function:
		conds, insts = o.Status.Conditions, o.Status.Instances
	}
	for _, cd := range conds {
		if cd.Reason == "ImageNotFound" {
			return cd.Message
		}
	}
	for _, i := range insts {
		if i.Phase == v1.PhaseFailed {
			return fmt.Sprintf("instance %s cannot start: %s", i.Name, i.Message)
		}
	}
	return ""
}

// settle applies the function's final scale over what is stored now.
func (c *Converter) settle(ctx context.Context, objs Objects, kind, env, name string, final v1.Object) (v1.Object, error) {
	// The function's controller writes its status meanwhile: a conflict
	// is a write between our read and ours, so read again and retry.
	for attempt := 0; ; attempt++ {
		obj, err := c.settleOnce(ctx, objs, kind, env, name, final)
		if err == nil || !v1.IsConflict(err) || attempt == 9 || ctx.Err() != nil {
			return obj, err
		}
	}
}

func (c *Converter) settleOnce(ctx context.Context, objs Objects, kind, env, name string, final v1.Object) (v1.Object, error) {
	cur, err := objs.Get(ctx, kind, env, name)
	if err != nil {
		return nil, err
	}
	fn, ok := cur.(*v1.Function)
	want := final.(*v1.Function)
	if !ok {
		return cur, nil
	}
	next := *fn
	next.Spec.Scale = want.Spec.Scale
	next.Status = v1.FunctionStatus{}
	next.Metadata.ResourceVersion = 0
	next.Metadata.Labels = maps.Clone(fn.Metadata.Labels)
	return objs.Apply(ctx, &next)
}
